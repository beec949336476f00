"""Remove ``run_cycle`` guards that are always true.

``run_cycle: "P.total_step:1"`` on a child of P that runs once per step of P
holds every time: P's counter moves before each run and every number is a
multiple of 1. So does ``"P.step:1"`` when P is a plain graph of two or more
steps per activation; where an activation of P may take a single step, P's
``step`` is 1 again at the next activation, which is not a move, and the
child does not run then.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.passes.flatten import GRAPH_COMMAND
from deepleaps.compiler.plan import Plan, PlanNode


def _always_true(plan: Plan, node: PlanNode) -> bool:
    cycle = node.run_cycle
    if cycle is None or cycle.every != 1 or cycle.node != node.parent or node.repeat != 1:
        return False
    if cycle.counter == "total_step":
        return True
    parent = plan[cycle.node]
    return cycle.counter == "step" and parent.command == GRAPH_COMMAND and parent.repeat >= 2


def run(plan: Plan) -> PassResult:
    changed, changes = [], []
    for node in plan.nodes.values():
        if _always_true(plan, node):
            changed.append(attrs.evolve(node, run_cycle=None))
            changes.append(f"{node.name}: run_cycle {node.run_cycle} is always true; guard removed")
    return PassResult(plan.replace(*changed), tuple(changes))
