"""Remove ``run_cycle`` guards that are always true.

``run_cycle: "P.step:1"`` on a child of P that runs once per step of P holds
every time: P's counter moves before each run and every number is a multiple of 1.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Plan


def run(plan: Plan) -> PassResult:
    changed, changes = [], []
    for node in plan.nodes.values():
        cycle = node.run_cycle
        if (
            cycle is not None
            and cycle.every == 1
            and cycle.node == node.parent
            and cycle.counter in ("step", "total_step")
            and node.repeat == 1
        ):
            changed.append(attrs.evolve(node, run_cycle=None))
            changes.append(f"{node.name}: run_cycle {cycle} is always true; guard removed")
    return PassResult(plan.replace(*changed), tuple(changes))
