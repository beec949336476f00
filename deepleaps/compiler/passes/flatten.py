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
    changes = []
    # Innermost first, so a graph takes the already flattened schedules of the graphs inside it.
    for name in reversed([node.name for node in plan.walk()]):
        node = plan[name]
        if not _inlinable(plan, node, watched) or name not in plan[node.parent].schedule:
            continue
        parent = plan[node.parent]
        index = parent.schedule.index(name)
        schedule = parent.schedule[:index] + node.schedule + parent.schedule[index + 1 :]
        inlined = {**parent.inlined_from, **dict.fromkeys(node.schedule, name), **node.inlined_from}
        plan = plan.replace(attrs.evolve(parent, schedule=schedule, inlined_from=inlined))
        changes.append(f"{name}: inlined into {parent.name} ({', '.join(node.schedule) or 'empty'})")
    return PassResult(plan, tuple(changes))
