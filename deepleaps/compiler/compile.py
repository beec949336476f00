"""The compiler driver: resolve → check → optimise.

>>> from deepleaps.compiler import compile_source
>>> compiled = compile_source("$root( *Graph -> *Graph_1 )")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from deepleaps.compiler.check import check_plan, diagnostics_of
from deepleaps.compiler.passes import PassLog, optimise
from deepleaps.compiler.plan import Plan, PlanNode
from deepleaps.compiler.registry import REGISTRY, Registry
from deepleaps.compiler.resolve import Resolver
from deepleaps.lang import ProgramError, SourceText, ast, parse
from deepleaps.lang.programfile import Definition, ProgramFile, load_program_file, merge_loaded
from deepleaps.workspace.confine import Confinement


@attrs.frozen
class Compiled:
    """A compiled program: the plan the interpreter runs and the plan it came from."""

    #: After name resolution and checks, before optimisation: what patches are diffed against.
    source: Plan
    #: After the optimisation passes: what the interpreter runs.
    plan: Plan
    log: tuple[PassLog, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Compiled from a change (see :mod:`deepleaps.compiler.incremental`): the nodes of ``plan``
    #: that may differ from the running plan's. None: any of them.
    changed: frozenset[str] | None = None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Resolution and the passes build many objects but no reference cycles. With
    the cyclic collector running, its passes over an ever larger heap make the time
    per node grow with the size of the program (2x slower per node at 100,000
    nodes), so it is paused meanwhile and restored as it was."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def resolve(
    programs: Iterable[ast.Program],
    definitions: Mapping[str, Definition] | None = None,
    *,
    registry: Registry | None = None,
    sources: Mapping[str, SourceText] | None = None,
    roots: Sequence[Path] = (),
    base: Plan | None = None,
    added_while_running: bool = False,
    known: Mapping[str, PlanNode] | None = None,
    confinement: Confinement | None = None,
) -> Plan:
    """Resolve and check programs into an unoptimised plan (on top of ``base``, if given).

    Raises:
        ProgramError: every problem found, in source order.
    """
    return resolve_change(
        programs,
        definitions,
        registry=registry,
        sources=sources,
        roots=roots,
        base=base,
        added_while_running=added_while_running,
        known=known,
        confinement=confinement,
    )[0]


def resolve_change(
    programs: Iterable[ast.Program],
    definitions: Mapping[str, Definition] | None = None,
    *,
    registry: Registry | None = None,
    sources: Mapping[str, SourceText] | None = None,
    roots: Sequence[Path] = (),
    base: Plan | None = None,
    added_while_running: bool = False,
    known: Mapping[str, PlanNode] | None = None,
    confinement: Confinement | None = None,
) -> tuple[Plan, frozenset[str]]:
    """:func:`resolve`, and the names of the nodes the programs made or named: on top of
    ``base``, the only ones that may differ from it. Only those are checked (the others
    passed when ``base`` was made), so resolving a patch does not walk the program.

    Raises:
        ProgramError: every problem found, in source order.
    """
    resolver = Resolver(
        registry or REGISTRY,
        definitions or {},
        sources=sources or {},
        roots=tuple(roots) or (Path.cwd(),),
        base=base,
        added_while_running=added_while_running,
        known=known,
        confinement=confinement,
    )
    with _collector_paused():
        for program in programs:
            resolver.add_program(program)
        plan = resolver.plan()
        names = frozenset(resolver.drafts)
        if not resolver.problems:
            check_plan(plan, resolver._fail, resolver.edge_spans, names if base is not None else None)
    if resolver.problems:
        raise ProgramError(diagnostics_of(resolver.problems))
    return plan, names


def compile_plan(source: Plan, disabled_passes: Iterable[str] = ()) -> Compiled:
    with _collector_paused():
        plan, log, warnings = optimise(source, disabled_passes)
    return Compiled(source, plan, tuple(log), tuple(warnings))


def compile_file(
    program_file: ProgramFile | str | Path,
    *,
    registry: Registry | None = None,
    roots: Sequence[Path] = (),
    disabled_passes: Iterable[str] = (),
    confinement: Confinement | None = None,
) -> Compiled:
    """Compile a YAML command file's DEFAULT programs with its DEFINE entries
    (and those of the files its ``LOAD`` verb names).

    Relative ``args`` paths are looked up in ``roots``: by default the current
    directory, then the command file's directory.
    """
    if not isinstance(program_file, ProgramFile):
        program_file = load_program_file(program_file)
    roots = tuple(roots) or (Path.cwd(), Path(program_file.path).resolve().parent)
    program_file = merge_loaded(program_file, roots)
    source = resolve(
        program_file.defaults,
        program_file.definitions,
        registry=registry,
        sources=program_file.sources,
        roots=roots,
        confinement=confinement,
    )
    return compile_plan(source, disabled_passes)


def compile_source(
    text: str,
    filename: str = "<program>",
    *,
    definitions: ProgramFile | None = None,
    registry: Registry | None = None,
    disabled_passes: Iterable[str] = (),
) -> Compiled:
    """Compile a ``.dl`` program, with the DEFINE entries of a YAML command file if given."""
    program = parse(text, filename)
    sources = {filename: SourceText(filename, text)}
    roots: tuple[Path, ...] = (Path.cwd(),)
    if definitions is not None:
        sources[definitions.source.name] = definitions.source
        roots += (Path(definitions.path).resolve().parent,)
    source = resolve(
        [program],
        definitions.definitions if definitions else {},
        registry=registry,
        sources=sources,
        roots=roots,
    )
    return compile_plan(source, disabled_passes)
