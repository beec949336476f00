"""What every subcommand shares: reading inputs and reporting program errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from deepleaps.lang import ProgramError

#: Exit status for program errors (1); click itself uses 2 for usage errors.
PROGRAM_ERROR = 1


@contextmanager
def reporting() -> Iterator[None]:
    """Turn a :class:`ProgramError` into diagnostics on stderr and exit status 1."""
    try:
        yield
    except ProgramError as error:
        click.echo(error.render(), err=True)
        sys.exit(PROGRAM_ERROR)


def is_yaml(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))
