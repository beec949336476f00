"""Precompute each graph's step order (topological, ties in order of appearance)."""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Plan, topological_order


def run(plan: Plan) -> PassResult:
    changed, changes = [], []
    for node in plan.nodes.values():
        if node.kind.has_children and node.schedule is None:
            order = topological_order(node)
            changed.append(attrs.evolve(node, schedule=order))
            changes.append(f"{node.name}: schedule {', '.join(order) or '(empty)'}")
    return PassResult(plan.replace(*changed), tuple(changes))
