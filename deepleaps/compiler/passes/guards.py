"""Remove ``run_cycle`` guards that are always true.

``run_cycle: "P.step:1"`` or ``"P.total_step:1"`` on a child of P that runs
once per step of P holds every time: P's ``total_step`` moves before each run
(that is what "moved" means, also for ``step``), and every count is a
multiple of 1.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Plan, PlanNode


def always_true(node: PlanNode) -> bool:
    """Whether ``node``'s ``run_cycle`` holds every time it could run (then this pass drops it)."""
    cycle = node.run_cycle
    return (
        cycle is not None
        and cycle.every == 1
        and cycle.node == node.parent
        and node.repeat == 1
        and cycle.counter in ("step", "total_step")
    )


def run(plan: Plan) -> PassResult:
    changed, changes = [], []
    for node in plan.nodes.values():
        if always_true(node):
            changed.append(attrs.evolve(node, run_cycle=None))
            changes.append(f"{node.name}: run_cycle {node.run_cycle} is always true; guard removed")
    return PassResult(plan.replace(*changed), tuple(changes))
