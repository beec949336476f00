"""Hoist one-shot setup (``finish: true``) out of a graph's step loop into its prologue.

Only a leading run of the schedule is hoisted — nodes with ``repeat: 1``
and no ``run_cycle`` — so every node still runs in the same order; the step
loop then no longer checks them at every step.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Plan


def run(plan: Plan) -> PassResult:
    changed, changes = [], []
    for graph in plan.nodes.values():
        if graph.schedule is None or graph.inlined_from:
            continue
        hoisted = []
        for name in graph.schedule:
            child = plan[name]
            if not (child.finish and child.repeat == 1 and child.run_cycle is None):
                break
            hoisted.append(name)
        if hoisted:
            changed.append(
                attrs.evolve(graph, prologue=graph.prologue + tuple(hoisted), schedule=graph.schedule[len(hoisted) :])
            )
            changes.append(f"{graph.name}: {', '.join(hoisted)} hoisted into the prologue")
    return PassResult(plan.replace(*changed), tuple(changes))
