"""A change to a running program checked and compiled in time proportional to it.

A live patch names a few nodes (see ``editscript.changed``); the whole-program
checks and the optimisation passes would walk every node. Here the checks
look at the changed nodes and at those whose ``run_cycle`` watches a node that
went or changed kind, and the passes run over one region of the program only:
the subtree of the nearest graph above the change that the flatten pass
cannot inline into its parent and whose own place in the plan the change
cannot move. Its compiled form is spliced into the running compiled plan. A
change whose effects may reach further (a ``run_cycle`` across the border of
the region, a change at the root) is compiled whole. Either way the result is
the plan :func:`~deepleaps.compiler.compile.compile_plan` makes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from deepleaps.compiler.arguments import check_node
from deepleaps.compiler.check import Problems, check_plan
from deepleaps.compiler.compile import Compiled, compile_plan
from deepleaps.compiler.facts import Watchers, facts
from deepleaps.compiler.passes import optimise
from deepleaps.compiler.passes.flatten import GRAPH_COMMAND
from deepleaps.compiler.passes.guards import always_true
from deepleaps.compiler.plan import OnError, Plan, PlanNode, owned
from deepleaps.compiler.registry import Registry
from deepleaps.lang.diagnostics import SourceText
from deepleaps.workspace.confine import Confinement


def check_change(
    before: Plan,
    after: Plan,
    changed: Iterable[str],
    registry: Registry,
    sources: Mapping[str, SourceText],
    confinement: Confinement,
) -> None:
    """The checks of ``after`` that :func:`~deepleaps.control.preparation.check_program` makes and
    that a change of the ``changed`` nodes of ``before`` can fail: their arguments, kinds,
    ``->`` cycles and ``run_cycle`` targets, and the ``run_cycle`` of every node that watches
    a node that went or changed kind. ``before`` passed them all.

    Raises:
        ProgramError: every problem found.
    """
    changed = set(changed)
    problems = Problems(sources)
    index = facts(after, before, changed).watchers
    names = {name for name in changed if name in after.nodes}
    for name in changed:
        if name not in after.nodes or (name in before.nodes and before[name].kind is not after[name].kind):
            names |= index.get(name, frozenset())
    ordered = sorted(names)
    check_plan(after, problems.fail, {}, ordered)
    for name in ordered:
        check_node(after[name], registry, problems.fail, confinement)
    problems.raise_any()


def compile_change(running: Compiled, source: Plan, changed: Iterable[str]) -> Compiled:
    """``compile_plan(source)``, where ``source`` is ``running.source`` with the ``changed``
    nodes changed: only the region of the program the change can affect is optimised, and
    spliced into ``running.plan``. The result's ``changed`` names the nodes of its plan
    that may differ from ``running.plan``'s."""
    changed = set(changed)
    top = _region(running, source, changed)
    if top is None:
        return compile_plan(source)
    region = [node.name for node in source.walk(top)]
    old_region = [node.name for node in running.plan.walk(top)]
    if not _closed(source, region, changed, facts(source, running.source, changed).watchers) or _watches_out(
        running.source, source, top
    ):
        return compile_plan(source)
    alone = Plan({name: source[name] for name in region} | {top: attrs.evolve(source[top], parent=None)}, top)
    optimised, log, warnings = optimise(alone)
    nodes = running.plan.node_dict()
    for name in old_region:
        del nodes[name]
    nodes.update(optimised.nodes)
    # In place, the region's top keeps its parent and what the guards pass made of its run_cycle.
    nodes[top] = attrs.evolve(optimised[top], parent=source[top].parent, run_cycle=running.plan[top].run_cycle)
    touched = {*old_region, *region}
    kept = tuple(warning for warning in running.plan.warnings if _warned_about(warning) not in touched)
    plan = Plan(owned(nodes), running.plan.root, warnings=(*kept, *warnings))
    return Compiled(source, plan, tuple(log), plan.warnings, changed=frozenset(touched))


_WARNED = re.compile(r"warning: node '([^']*)'")


def _warned_about(warning: str) -> str | None:
    match = _WARNED.search(warning)
    return match.group(1) if match else None


def _options(node: PlanNode) -> tuple:
    return (node.command, node.kind, node.parent, node.repeat, node.finish, node.run_cycle, node.on_error)


def _may_inline(node: PlanNode) -> bool:
    """Whether the flatten pass could inline ``node`` into its parent, by its own options."""
    return (
        node.command == GRAPH_COMMAND
        and node.parent is not None
        and node.repeat == 1
        and not node.finish
        and (node.run_cycle is None or always_true(node))  # the guards pass drops such a run_cycle
        and node.on_error is OnError.STOP
    )


def _fixed(running: Compiled, source: Plan, name: str) -> bool:
    """Whether graph ``name`` keeps its place in the compiled plan whatever happens below it:
    it is compiled now, the flatten pass can inline it neither before nor after the change,
    and its own options stay as they were."""
    old, new = running.source.nodes.get(name), source[name]
    return (
        name in running.plan.nodes
        and old is not None
        and _options(old) == _options(new)
        and not _may_inline(old)
        and not _may_inline(new)
    )


def _region(running: Compiled, source: Plan, changed: set[str]) -> str | None:
    """The top of the region a change can affect, or None if that is the whole program."""
    starts = set()
    for name in changed:
        node = source.nodes.get(name)
        if node is None:  # a node that went is named with its parent, which changed
            continue
        old = running.source.nodes.get(name)
        # A node's own options decide its place in its parent; what is below it, only its own.
        keeps_place = old is not None and _options(old) == _options(node)
        starts.add(name if keeps_place or node.parent is None else node.parent)
    if not starts:
        return None
    top: str | None = _common_ancestor(source, starts)
    while top is not None and not _fixed(running, source, top):
        top = source[top].parent
    if top is None or top == source.root:
        return None
    return top


def _common_ancestor(plan: Plan, names: set[str]) -> str:
    chains = []
    for name in names:
        chain: list[str] = []
        current: str | None = name
        while current is not None:
            chain.append(current)
            current = plan[current].parent
        chains.append(chain[::-1])
    common = chains[0][0]
    for level in zip(*chains, strict=False):
        if len(set(level)) > 1:
            break
        common = level[0]
    return common


def _closed(source: Plan, region: list[str], changed: set[str], index: Watchers) -> bool:
    """Whether no ``run_cycle`` crosses the border of the region (except its top's own,
    outwards): what the passes decide inside it then depends on nothing outside."""
    inside = set(region)
    top = region[0]
    for name in region[1:]:
        cycle = source[name].run_cycle
        if cycle is not None and cycle.node not in inside:
            return False
    cycle = source[top].run_cycle
    if cycle is not None and cycle.node in inside:
        return False
    for target in inside | {name for name in changed if name not in source.nodes}:
        if not index.get(target, frozenset()) <= inside:
            return False
    return True


def _watches_out(before: Plan, after: Plan, top: str) -> bool:
    """Whether the change can move what the passes decide outside the region of ``top``: a
    node below ``top`` before the change watched a node outside it (removed or changed, the
    watcher can free that node to be inlined, or stop it), or the nodes watching ``top``
    itself changed while its parent may be inlined (a graph whose child is watched is not)."""
    old = {node.name for node in before.walk(top)} if top in before.nodes else set()
    if any((cycle := before[name].run_cycle) is not None and cycle.node not in old for name in old - {top}):
        return True

    def watchers(plan: Plan, names: Iterable[str]) -> set[str]:
        return {name for name in names if (cycle := plan[name].run_cycle) is not None and cycle.node == top}

    parent = after[top].parent
    new = {node.name for node in after.walk(top)}
    moved = watchers(before, old - {top}) != watchers(after, new - {top})
    return moved and parent is not None and _may_inline(after[parent])
