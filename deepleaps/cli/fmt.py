"""``deepleaps fmt``: print (or check, or rewrite) the canonical form of programs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from deepleaps.cli.common import PROGRAM_ERROR, is_yaml
from deepleaps.lang import ProgramError, format_program, parse
from deepleaps.lang.programfile import load_program_file


def _canonical_yaml(path: str, text: bytes) -> tuple[str, bool]:
    """Each program string of a YAML file in canonical form, and whether all already were."""
    program_file = load_program_file(path, text)
    pieces, canonical = [], True
    for label, raw, span in program_file.program_texts:
        formatted = format_program(parse(raw, path)).rstrip("\n")
        canonical &= raw.strip() == formatted
        pieces.append(f"# {label} ({span})\n{formatted}\n")
    return "\n".join(pieces), canonical


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--check", is_flag=True, help="Print nothing; exit 1 if a file is not in canonical form.")
@click.option("--write", "-w", is_flag=True, help="Rewrite .dl files in place.")
@click.option("--yaml", "stdin_yaml", is_flag=True, help="Read standard input as a YAML command file.")
def fmt(files: tuple[str, ...], check: bool, write: bool, stdin_yaml: bool) -> None:
    """Print the canonical form of .dl programs or of the program strings in YAML files.

    FILE may be '-' for standard input.
    """
    if check and write:
        raise click.UsageError("--check and --write exclude each other")
    failed = False
    for name in files:
        if name != "-" and not Path(name).is_file():
            raise click.UsageError(f"no such file: '{name}'")
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        label = "<stdin>" if name == "-" else name
        yaml_input = stdin_yaml if name == "-" else is_yaml(name)
        if write and yaml_input:
            raise click.UsageError(f"--write rewrites .dl files only, not '{name}'")
        try:
            if yaml_input:
                formatted, canonical = _canonical_yaml(label, data)
            else:
                formatted = format_program(parse(data, label))
                canonical = data.decode("utf-8") == formatted
        except ProgramError as error:
            click.echo(error.render(), err=True)
            failed = True
            continue
        if check:
            if not canonical:
                click.echo(f"{label}: not in canonical form", err=True)
                failed = True
        elif write and name != "-":
            if not canonical:
                Path(name).write_text(formatted, encoding="utf-8")
        else:
            click.echo(formatted, nl=False)
    if failed:
        sys.exit(PROGRAM_ERROR)
