"""The ``deepleaps`` command line: one module per subcommand.

Exit codes, for every subcommand: 0 ok, 1 program errors (diagnostics on
stderr), 2 usage.
"""

from __future__ import annotations

import click

from deepleaps import __version__
from deepleaps.cli.compile import compile_command
from deepleaps.cli.control import apply, diff, interactive, program, send, status
from deepleaps.cli.dashboard import dashboard
from deepleaps.cli.fmt import fmt
from deepleaps.cli.run import init, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deepleaps")
def main() -> None:
    """deepleaps: train PyTorch models with a program you can patch while it runs."""


main.add_command(compile_command)
main.add_command(fmt)
main.add_command(init)
main.add_command(run)
for _command in (send, apply, diff, program, status, interactive, dashboard):
    main.add_command(_command)
