"""Preparing a change of the program: everything of it that needs only the program.

A change is prepared against a :class:`Program` — the controller itself, or a
:class:`Snapshot` of it taken where a request arrives — into a
:class:`Prepared`: the edit script, the new source plan, the compiler's
checks of it and its compiled plan. The safe point then only builds,
journals and installs it (docs/control.md, "The commit protocol"). The
same checks apply to a program reached by another path: a replayed journal,
a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from deepleaps.compiler import Compiled, Plan, Registry
from deepleaps.compiler.arguments import check_node
from deepleaps.compiler.check import Problems, check_plan
from deepleaps.compiler.incremental import check_change, compile_change
from deepleaps.control import editjson, editscript
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import SourceText, error
from deepleaps.lang.programfile import Definition, Override
from deepleaps.workspace.confine import Confinement


def check_program(plan: Plan, registry: Registry, sources: Mapping[str, SourceText], confinement: Confinement) -> None:
    """The whole-program checks the compiler runs, on a source plan reached by another path
    (a patch, a replayed journal, a checkpoint).

    Raises:
        ProgramError: every problem found.
    """
    problems = Problems(sources)
    check_plan(plan, problems.fail, {})
    for node in plan.nodes.values():
        check_node(node, registry, problems.fail, confinement)
    problems.raise_any()


def restore_program(
    saved: Mapping[str, Any], registry: Registry, confinement: Confinement, overrides: Sequence[Override] = ()
) -> Plan:
    """The source plan a checkpoint kept (see :meth:`Controller.saved`) with ``deepleaps run
    --set`` overrides of its nodes' arguments, checked.

    Raises:
        ProgramError: it is not a program, an override names no node of it, or it no
            longer passes the checks (a class gone, …).
    """
    plan = editjson.program_from_data(saved["program"])
    missing = [override for override in overrides if override.node not in plan]
    if missing:
        raise ProgramError(
            [
                error(f"--set: the resumed program has no node '{override.node}'", override.span, override.source)
                for override in missing
            ]
        )
    plan = editscript.apply(plan, [editscript.SetArgument(o.node, o.key, o.value) for o in overrides])
    check_program(plan, registry, {override.source.name: override.source for override in overrides}, confinement)
    return plan


class Program(Protocol):
    """What a change is computed against: the running program at one version, and what
    its text may name. The controller is one; :class:`Snapshot` is one taken at a moment."""

    @property
    def source(self) -> Plan: ...
    @property
    def compiled(self) -> Plan: ...
    @property
    def version(self) -> int: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def definitions(self) -> Mapping[str, Definition]: ...
    @property
    def sources(self) -> Mapping[str, SourceText]: ...
    @property
    def roots(self) -> tuple[Path, ...]: ...
    @property
    def confinement(self) -> Confinement: ...


@attrs.frozen
class Snapshot:
    """The running program as a request found it: preparing the request against it
    needs nothing that the training thread changes."""

    source: Plan
    compiled: Plan
    version: int
    registry: Registry
    definitions: Mapping[str, Definition]
    sources: Mapping[str, SourceText]
    roots: tuple[Path, ...]
    confinement: Confinement


@attrs.frozen
class Prepared:
    """A change of the program made ready for its commit: the edit script, the new source
    plan (``None``: it changes nothing) and its compilation, against ``version`` of the
    program and ``generation`` of the command classes (a reload moves it)."""

    version: int
    generation: int
    script: editscript.EditScript
    after: Plan | None = None
    compiled: Compiled | None = None


def prepare(program: Program, script: editscript.EditScript) -> Prepared:
    """Everything of a change that needs only the program: the new program, the compiler's
    checks of it and its compiled plan.

    Raises:
        ProgramError: the change leaves a program that does not pass the checks.
    """
    at = (program.version, program.registry.generation)
    before = program.source
    after = editscript.apply(before, script)
    changed = editscript.changed(before, script)
    if not editscript.diff(before, after, among=changed):
        return Prepared(*at, script)
    check_change(before, after, changed, program.registry, program.sources, program.confinement)
    return Prepared(*at, script, after, compile_change(Compiled(before, program.compiled), after, changed))
