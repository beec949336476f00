"""Remove nodes that can never run, with a warning.

A node with ``repeat: 0`` never runs, nor does anything below it. A node whose
``run_cycle`` waits for ``X.step`` to reach N, where X is a plain graph that
takes fewer than N steps per activation, never runs either; nor does a node
whose ``run_cycle`` watches a node removed here, whose counters stay at 0.
A loader with ``repeat: 0`` still counts its epochs, so it stays while a
``run_cycle`` watches its ``epoch``.

Removing a node must not change the order its siblings run in: the
tie-break of the topological order is the order of appearance, and a node
that waited for the removed one could otherwise overtake an earlier sibling.
So the parent's order is fixed (as its schedule) before the node goes.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Kind, Plan, PlanNode, topological_order


def _never_runs(plan: Plan, node: PlanNode, epoch_watched: set[str]) -> str | None:
    if node.parent is None:
        return None  # the root always runs
    if node.repeat == 0 and not (node.kind is Kind.LOADER and node.name in epoch_watched):
        return "it has repeat: 0"
    cycle = node.run_cycle
    if cycle is None:
        return None
    if cycle.node not in plan:
        return f"run_cycle {cycle} watches '{cycle.node}', which never runs"
    target = plan[cycle.node]
    if cycle.counter == "step" and target.kind is Kind.GRAPH and 0 <= target.repeat < cycle.every:
        return f"run_cycle {cycle} waits for a step that '{cycle.node}' (repeat: {target.repeat}) never reaches"
    return None


def run(plan: Plan) -> PassResult:
    changes, warnings = [], []
    removed = True
    while removed:  # again after a removal: a node watching a removed one never runs either
        removed = False
        epoch_watched = {
            node.run_cycle.node for node in plan.nodes.values() if node.run_cycle and node.run_cycle.counter == "epoch"
        }
        for node in list(plan.nodes.values()):
            if node.name not in plan:
                continue  # already removed with an ancestor
            reason = _never_runs(plan, node, epoch_watched)
            if reason is None:
                continue
            parent = plan[node.parent]
            if parent.schedule is None:
                plan = plan.replace(attrs.evolve(parent, schedule=topological_order(parent)))
            plan = plan.without(node.name)
            removed = True
            changes.append(f"{node.name}: removed, it can never run")
            location = f"{node.span}: " if node.span else ""
            warnings.append(f"{location}warning: node '{node.name}' can never run ({reason}); removed")
    return PassResult(plan, tuple(changes), tuple(warnings))
