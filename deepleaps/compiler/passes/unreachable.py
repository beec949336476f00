"""Remove nodes that can never run, with a warning.

A node with ``repeat: 0`` never runs, nor does anything below it. A node whose
``run_cycle`` waits for ``X.step`` to reach N, where X is a plain graph that
takes fewer than N steps per activation, never runs either.
"""

from __future__ import annotations

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import Kind, Plan, PlanNode


def _never_runs(plan: Plan, node: PlanNode) -> str | None:
    if node.repeat == 0 and node.parent is not None:
        return "it has repeat: 0"
    cycle = node.run_cycle
    if cycle is None or cycle.counter != "step" or cycle.node not in plan:
        return None
    target = plan[cycle.node]
    if target.kind is Kind.GRAPH and 0 <= target.repeat < cycle.every:
        return f"run_cycle {cycle} waits for a step that '{cycle.node}' (repeat: {target.repeat}) never reaches"
    return None


def run(plan: Plan) -> PassResult:
    changes, warnings = [], []
    for node in list(plan.nodes.values()):
        if node.name not in plan:
            continue  # already removed with an ancestor
        reason = _never_runs(plan, node)
        if reason is not None:
            plan = plan.without(node.name)
            changes.append(f"{node.name}: removed, it can never run")
            location = f"{node.span}: " if node.span else ""
            warnings.append(f"{location}warning: node '{node.name}' can never run ({reason}); removed")
    return PassResult(plan, tuple(changes), tuple(warnings))
