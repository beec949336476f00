"""Optimisation passes over the Plan, each a small function in its own module.

A pass takes a Plan and returns a :class:`PassResult`: the new plan, what it
changed (for ``deepleaps compile --explain``) and any warnings. Passes are
registered by id, run in order and repeated until none changes anything (at
most :data:`MAX_ROUNDS` rounds); any of them can be switched off by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from deepleaps.compiler.plan import Plan


@attrs.frozen
class PassResult:
    plan: Plan
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


Pass = Callable[[Plan], PassResult]
MAX_ROUNDS = 10


@attrs.frozen
class PassLog:
    """One round of one pass that changed something."""

    round: int
    pass_id: str
    changes: tuple[str, ...]
    plan: Plan


def _registry() -> dict[str, Pass]:
    from deepleaps.compiler.passes import flatten, guards, prologue, schedule, unreachable

    # The schedule comes first: removing a node later keeps its siblings' order as it is.
    return {
        "schedule": schedule.run,
        "unreachable": unreachable.run,
        "guards": guards.run,
        "prologue": prologue.run,
        "flatten": flatten.run,
    }


PASSES: dict[str, Pass] = _registry()


def optimise(plan: Plan, disabled: Iterable[str] = ()) -> tuple[Plan, list[PassLog], list[str]]:
    """Run every enabled pass to a fixed point; the plan, the log of changes, the warnings."""
    disabled = set(disabled)
    unknown = disabled - set(PASSES)
    if unknown:
        raise ValueError(f"unknown pass {', '.join(sorted(unknown))}; passes are {', '.join(PASSES)}")
    log: list[PassLog] = []
    warnings: list[str] = []
    for round_number in range(1, MAX_ROUNDS + 1):
        changed = False
        for pass_id, run in PASSES.items():
            if pass_id in disabled:
                continue
            result = run(plan)
            warnings.extend(result.warnings)
            if result.changes:
                changed = True
                plan = result.plan
                log.append(PassLog(round_number, pass_id, result.changes, plan))
        if not changed:
            break
    return attrs.evolve(plan, warnings=tuple(warnings)), log, warnings
