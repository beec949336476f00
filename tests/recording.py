"""A recording leaf command for tests of run semantics, and a helper that runs a plan.

``*Rec[tag="x"]`` appends one :class:`Record` to the list in the variable
``trace`` each time it runs: its node name, its tag, its own counters, the
counters of every graph above it (parent first) and the current sample. Two
plans run the same way exactly when their traces are equal.

``Rec`` is registered in :data:`RECORDING`, a private child of the built-in
registry, so compiling a program that uses it needs ``registry=RECORDING``::

    compiled = compile_source('$root( *Rec[tag="a"] )', registry=RECORDING)
    assert [r.tag for r in run_trace(compiled.plan)] == ["a"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

import deepleaps.runtime.commands  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import REGISTRY, Kind, Plan
from deepleaps.runtime import Command, Context, Interpreter

RECORDING = REGISTRY.child()

#: ``(step, total_step, epoch)`` of one node.
Counters = tuple[int, int, int]


@attrs.frozen
class Record:
    node: str
    tag: str
    counters: Counters
    #: ``(graph, counters)`` from the parent up to the root.
    ancestors: tuple[tuple[str, Counters], ...]
    sample: Any

    @property
    def parent(self) -> tuple[str, Counters]:
        return self.ancestors[0]

    def __str__(self) -> str:
        above = " ".join(f"{name}{list(counters)}" for name, counters in self.ancestors)
        return f"{self.node}({self.tag}){list(self.counters)} sample={self.sample!r} under {above}"


def _counters(ctx: Context, name: str) -> Counters:
    state = ctx.counters(name)
    return (state.step, state.total_step, state.epoch)


@RECORDING.register
class Rec(Command):
    """Records that it ran (see the module docstring)."""

    name = "Rec"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        tag: str = ""

    def run(self, ctx: Context) -> None:
        ancestors = []
        parent = self.node.parent
        while parent is not None:
            ancestors.append((parent, _counters(ctx, parent)))
            parent = ctx.interpreter.plan[parent].parent
        record = Record(self.node.name, self.args.tag, _counters(ctx, self.node.name), tuple(ancestors), ctx.sample)
        ctx.variables["trace"].append(record)


#: Variables every test run sees: data for ``*IterateCommand[data=$xs]`` loaders.
DATA = {"xs": [1, 2, 3], "ys": [10, 20], "one": ["only"], "empty": []}


def run_trace(plan: Plan, variables: Mapping[str, Any] | None = None) -> list[Record]:
    """Run ``plan`` with the recording registry; what the ``Rec`` nodes recorded, in order."""
    trace: list[Record] = []
    values = {**DATA, **(variables or {}), "trace": trace}
    Interpreter(plan, registry=RECORDING, variables=values).run()
    return trace
