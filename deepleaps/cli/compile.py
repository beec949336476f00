"""``deepleaps compile``: compile a program and show its plan (tree, JSON, DOT, picture)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from deepleaps.cli.common import is_yaml, reporting
from deepleaps.compiler import REGISTRY, Compiled, compile_file, compile_source
from deepleaps.compiler.dot import DrawError, NoGraphviz, draw, to_dot
from deepleaps.compiler.passes import PASSES
from deepleaps.compiler.registry import Registry
from deepleaps.compiler.views import plan_to_data, plan_tree
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import Diagnostic, decode_utf8, describe, error
from deepleaps.lang.programfile import ProgramFile, load_program_file

#: Exit status for usage errors and a missing Graphviz (click uses 2 for usage too).
USAGE = 2
#: The verbs of a command file whose arguments are modules to import before compiling.
IMPORT_VERBS = ("IMPORT_MODULE", "ADD_COMMAND_MODULE")


class _UsageProblem(click.ClickException):
    """A mistake in how the command was called (not in the program): exit status 2."""

    exit_code = USAGE


@click.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tree", "tree", is_flag=True, help="The plan as an indented tree (the default).")
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON (schema deepleaps.plan/1).")
@click.option("--dot", "dot", is_flag=True, help="The plan as a Graphviz DOT graph.")
@click.option("--explain", is_flag=True, help="What each optimisation pass changed, then the tree.")
@click.option("--svg", is_flag=True, help="The DOT graph drawn as SVG (needs Graphviz 'dot').")
@click.option("--png", is_flag=True, help="The DOT graph drawn as PNG (needs Graphviz 'dot' and -o).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option(
    "--define",
    "define",
    type=click.Path(dir_okay=False),
    help="A YAML command file whose DEFINE entries (and module imports) a .dl program uses.",
)
@click.option(
    "--no-pass",
    "disabled",
    multiple=True,
    type=click.Choice(list(PASSES)),
    help="Switch an optimisation pass off (repeatable).",
)
def compile_command(
    file: str,
    tree: bool,
    as_json: bool,
    dot: bool,
    explain: bool,
    svg: bool,
    png: bool,
    output: str | None,
    define: str | None,
    disabled: tuple[str, ...],
) -> None:
    """Compile FILE and print its plan: a YAML command file (.yaml, .yml: its DEFAULT
    programs with its DEFINE entries) or a .dl program (with --define DEFS.yaml).

    \b
    Examples:
      deepleaps compile resource/configs/default.yaml
      deepleaps compile train.dl --define defs.yaml --explain
      deepleaps compile resource/configs/default.yaml --svg -o plan.svg
      deepleaps compile resource/configs/default.yaml --no-pass flatten --json

    Exit status: 0 ok, 1 program errors (on stderr), 2 usage.
    """
    views = [name for name, on in (("--tree", tree), ("--json", as_json), ("--dot", dot), ("--explain", explain)) if on]
    pictures = [name for name, on in (("--svg", svg), ("--png", png)) if on]
    if len(views) > 1 or len(pictures) > 1:
        raise click.UsageError(f"choose one of {' and '.join(views if len(views) > 1 else pictures)}")
    if pictures and views and views != ["--dot"]:
        raise click.UsageError(f"{pictures[0]} draws the DOT graph; it does not go with {views[0]}")
    if png and output is None:
        raise click.UsageError("--png writes binary data: give the output file with -o")
    if not Path(file).is_file():
        raise click.UsageError(f"no such file: '{file}'")
    yaml_input = is_yaml(file)
    if not yaml_input and not file.endswith(".dl"):
        raise click.UsageError(f"'{file}' is neither a YAML command file (.yaml, .yml) nor a program (.dl)")
    if define is not None:
        if yaml_input:
            raise click.UsageError("--define goes with a .dl program; a YAML command file has its own DEFINE")
        if not Path(define).is_file():
            raise click.UsageError(f"no such file: '{define}'")
    if pictures and shutil.which("dot") is None:
        raise _UsageProblem(
            f"{pictures[0]} needs Graphviz's 'dot' program, which is not installed "
            "(e.g. apt-get install graphviz, brew install graphviz); --dot prints the graph as text"
        )

    with reporting():
        compiled = _compile(file, yaml_input, define, disabled)
    for warning in compiled.warnings:
        click.echo(warning, err=True)

    plan = compiled.plan
    if pictures:
        _write(output, _draw(to_dot(plan, title=file), pictures[0][2:]))
    elif dot:
        _write(output, to_dot(plan, title=file))
    elif as_json:
        _write(output, json.dumps(plan_to_data(plan), indent=2, ensure_ascii=False) + "\n")
    elif explain:
        _write(output, _explanation(compiled, disabled) + "\n" + plan_tree(plan))
    else:
        _write(output, plan_tree(plan))


def _compile(file: str, yaml_input: bool, define: str | None, disabled: tuple[str, ...]) -> Compiled:
    """Compile with the built-in commands and the modules the command file imports.

    Raises:
        ProgramError: the program's errors, after those of failed imports.
    """
    import deepleaps.runtime.commands
    import deepleaps.train.commands  # noqa: F401 - the training commands of the seed

    registry = REGISTRY.child()
    if yaml_input:
        program_file = load_program_file(file)
        problems = _import_modules(program_file, registry)
        try:
            with _on_path(Path.cwd()):  # the workspace's classes are decided where a run would import them
                compiled = compile_file(program_file, registry=registry, disabled_passes=disabled)
        except ProgramError as error:
            raise ProgramError([*problems, *error.diagnostics]) from None
    else:
        definitions = load_program_file(define) if define is not None else None
        problems = _import_modules(definitions, registry) if definitions is not None else []
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise _UsageProblem(f"cannot read '{file}': {exc.strerror or exc}") from None
        text = decode_utf8(data, file)
        try:
            with _on_path(Path.cwd()):
                compiled = compile_source(
                    text, file, definitions=definitions, registry=registry, disabled_passes=disabled
                )
        except ProgramError as error:
            raise ProgramError([*problems, *error.diagnostics]) from None
    if problems:
        raise ProgramError(problems)
    return compiled


def _import_modules(program_file: ProgramFile, registry: Registry) -> list[Diagnostic]:
    """Import the modules named by IMPORT_MODULE and ADD_COMMAND_MODULE, registering
    their command classes; a module that fails to import is a diagnostic at its verb."""
    problems = []
    for call in program_file.verbs:
        if call.verb not in IMPORT_VERBS:
            continue
        module = call.argument
        if not isinstance(module, str) or not module.strip():
            problems.append(error(f"{call.verb} takes module paths, got {module!r}", call.span, program_file.source))
            continue
        module = _module_name(module)
        try:
            with _on_path(Path.cwd()):
                registry.import_module(module)
        except Exception as exc:  # whatever the module raises while importing is the user's
            message = f"cannot import module '{module}': {describe(exc)}"
            problems.append(error(message, call.span, program_file.source))
    return problems


def _module_name(text: str) -> str:
    """``src.ipc.CustomCommand``; a file path ``src/ipc/CustomCommand.py`` is accepted too."""
    text = text.strip()
    if text.endswith(".py"):
        text = text[:-3].replace("\\", "/").strip("/").replace("/", ".")
    return text


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on sys.path while importing, so a workspace's ``src`` is found."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _explanation(compiled: Compiled, disabled: tuple[str, ...]) -> str:
    passes = ", ".join(name + (" (off)" if name in disabled else "") for name in PASSES)
    lines = [f"passes: {passes}"]
    if not compiled.log:
        lines.append("no pass changed anything")
    for entry in compiled.log:
        lines.append(f"round {entry.round}, {entry.pass_id}:")
        lines.extend(f"  {change}" for change in entry.changes)
    return "\n".join(lines) + "\n"


def _draw(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on the DOT text."""
    try:
        return draw(dot_text, fmt)
    except NoGraphviz as problem:
        raise _UsageProblem(str(problem)) from None
    except DrawError as problem:
        raise click.ClickException(str(problem)) from None


def _write(output: str | None, data: str | bytes) -> None:
    if output is None:
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            click.echo(data, nl=False)
        return
    try:
        if isinstance(data, bytes):
            Path(output).write_bytes(data)
        else:
            Path(output).write_text(data, encoding="utf-8")
    except OSError as exc:
        raise _UsageProblem(f"cannot write '{output}': {exc.strerror or exc}") from None
