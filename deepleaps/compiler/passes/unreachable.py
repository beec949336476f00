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


def _removed(plan: Plan, name: str | None, gone: set[str]) -> bool:
    """Whether ``name`` is not in the plan, or goes with itself or an ancestor in ``gone``."""
    while name is not None:
        if name in gone or name not in plan:
            return True
        name = plan[name].parent
    return False


def _never_runs(plan: Plan, node: PlanNode, epoch_watched: set[str], gone: set[str]) -> str | None:
    if node.parent is None:
        return None  # the root always runs
    if node.repeat == 0 and not (node.kind is Kind.LOADER and node.name in epoch_watched):
        return "it has repeat: 0"
    cycle = node.run_cycle
    if cycle is None:
        return None
    if _removed(plan, cycle.node, gone):
        return f"run_cycle {cycle} watches '{cycle.node}', which never runs"
    target = plan[cycle.node]
    if cycle.counter == "step" and target.kind is Kind.GRAPH and 0 <= target.repeat < cycle.every:
        return f"run_cycle {cycle} waits for a step that '{cycle.node}' (repeat: {target.repeat}) never reaches"
    return None


def run(plan: Plan) -> PassResult:
    changes, warnings = [], []
    while True:  # again after removals: a node watching a removed one never runs either
        epoch_watched = {
            node.run_cycle.node for node in plan.nodes.values() if node.run_cycle and node.run_cycle.counter == "epoch"
        }
        removed: list[str] = []
        gone: set[str] = set()
        ordered: dict[str, PlanNode] = {}  # parents whose order is fixed before they lose a child
        for node in plan.nodes.values():
            if _removed(plan, node.name, gone):
                continue  # goes with an ancestor
            reason = _never_runs(plan, node, epoch_watched, gone)
            if reason is None:
                continue
            assert node.parent is not None  # the root always runs
            parent = plan[node.parent]
            if parent.schedule is None and parent.name not in ordered:
                ordered[parent.name] = attrs.evolve(parent, schedule=topological_order(parent))
            removed.append(node.name)
            gone.add(node.name)
            changes.append(f"{node.name}: removed, it can never run")
            location = f"{node.span}: " if node.span else ""
            warnings.append(f"{location}warning: node '{node.name}' can never run ({reason}); removed")
        if not removed:
            return PassResult(plan, tuple(changes), tuple(warnings))
        plan = plan.replace(*ordered.values()).without(*removed)
