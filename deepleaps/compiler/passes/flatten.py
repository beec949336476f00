"""Inline plain graphs into their parent's schedule.

A built-in ``Graph`` node that runs exactly once per step of its parent
(repeat 1, no finish, no run_cycle, no prologue) and whose counters no
``run_cycle`` reads adds nothing but a level of looping: its schedule is
spliced into its parent's in its place, innermost graphs first. The
interpreter still counts the inlined graphs' steps (those that some scheduled
child came from, so a graph left with no child of its own stays) and resets
their children's ``step`` counters, but at the start of the parent's step
rather than where the graph would have started: so a graph whose children's
counters a ``run_cycle`` reads is not inlined either.
"""

from __future__ import annotations

import attrs

from deepleaps.compiler.passes import PassResult
from deepleaps.compiler.plan import OnError, Plan, PlanNode

GRAPH_COMMAND = "Graph"


def _inlinable(plan: Plan, node: PlanNode, watched: set[str]) -> bool:
    return (
        node.command == GRAPH_COMMAND
        and node.parent is not None
        and node.repeat == 1
        and not node.finish
        and node.run_cycle is None
        and node.on_error is OnError.STOP
        and not node.prologue
        and node.schedule is not None
        and node.name not in watched
        and not watched & {*node.schedule, *node.inlined_from}
        and any(child not in node.inlined_from for child in node.schedule)
        and plan[node.parent].schedule is not None
    )


def run(plan: Plan) -> PassResult:
    watched = {node.run_cycle.node for node in plan.nodes.values() if node.run_cycle is not None}
    scheduled = {
        child for graph in plan.nodes.values() for child in graph.schedule or () if plan[child].parent == graph.name
    }
    flattened: dict[str, PlanNode] = {}  # graphs with inlined children spliced into their schedule
    inlined: set[str] = set()
    changes = []
    # Innermost first, so a graph takes the already flattened schedules of the graphs inside it.
    for node in reversed(list(plan.walk())):
        if node.schedule is not None and inlined.intersection(node.children):
            spliced = {child: flattened.get(child) or plan[child] for child in node.children if child in inlined}
            node = flattened[node.name] = _splice(node, spliced)
        if node.name in scheduled and _inlinable(plan, node, watched):
            inlined.add(node.name)
            changes.append(f"{node.name}: inlined into {node.parent} ({', '.join(_schedule(node)) or 'empty'})")
    return PassResult(plan.replace(*flattened.values()), tuple(changes))


def _splice(graph: PlanNode, spliced: dict[str, PlanNode]) -> PlanNode:
    """``graph`` with the schedules of its inlined children (``spliced``) in place of them."""
    schedule: list[str] = []
    for name in _schedule(graph):
        schedule.extend(_schedule(spliced[name]) if name in spliced else (name,))
    came_from = dict(graph.inlined_from)
    for child in reversed(spliced.values()):  # the order they were inlined in
        came_from.update(dict.fromkeys(_schedule(child), child.name))
        came_from.update(child.inlined_from)
    return attrs.evolve(graph, schedule=tuple(schedule), inlined_from=came_from)


def _schedule(graph: PlanNode) -> tuple[str, ...]:
    """The schedule of a graph this pass splices (or inlines): those have one."""
    assert graph.schedule is not None
    return graph.schedule
