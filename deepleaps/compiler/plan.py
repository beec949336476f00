"""The Plan: the immutable executable node graph the interpreter runs.

Identity is the instance name: a patch that leaves a node alone leaves its
name, and so its counters and state, alone. Graph nodes hold their children
and ``->`` edges; the optimisation passes fill in ``schedule`` (the order
children run in each step) and ``prologue`` (one-shot children hoisted out
of the step loop).
"""

from __future__ import annotations

import enum
import heapq
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from deepleaps.lang.ast import Span


class Kind(enum.Enum):
    """What a command does with the steps of its node (docs/design.md §4)."""

    GRAPH = "graph"  # each step runs its children once, in schedule order
    LOADER = "loader"  # a graph whose activation is an epoch and whose step is a batch
    LEAF = "leaf"  # runs its command; no children

    @property
    def has_children(self) -> bool:
        return self is not Kind.LEAF


class OnError(enum.Enum):
    STOP = "stop"  # stop the run cleanly, reporting the node path
    SKIP = "skip"  # report and go on
    REMOVE = "remove"  # report and remove the node (default for nodes added while running)


COUNTERS = ("step", "total_step", "epoch")
_CYCLE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\.([a-z_]+)\s*:\s*([0-9]+)\s*$")


@attrs.frozen
class Cycle:
    """``run_cycle: "X.step:N"``: run when X's counter is a multiple of N and has moved."""

    node: str
    counter: str
    every: int

    @classmethod
    def parse(cls, text: str) -> Cycle | None:
        """The cycle written ``NODE.counter:N``, or None if the text is not of that form."""
        match = _CYCLE.match(text)
        if match is None:
            return None
        return cls(match.group(1), match.group(2), int(match.group(3)))

    def __str__(self) -> str:
        return f"{self.node}.{self.counter}:{self.every}"


def _frozen_mapping(value: Mapping) -> Mapping:
    """A read-only copy of ``value``; a read-only view is taken as it is (those of plans and
    nodes are never written through), so that a changed plan of 10,000 nodes built with
    :meth:`Plan.node_dict` is not copied twice."""
    if isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(value.copy() if isinstance(value, dict) else dict(value))


def owned(nodes: dict[str, PlanNode]) -> Mapping[str, PlanNode]:
    """``nodes``, which the caller made for a new plan and no longer writes, as the plan's
    read-only mapping without another copy."""
    return MappingProxyType(nodes)


@attrs.frozen
class PlanNode:
    name: str
    command: str
    kind: Kind
    args: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    parent: str | None = None
    repeat: int = 1
    finish: bool = False
    run_cycle: Cycle | None = None
    on_error: OnError = OnError.STOP
    #: Graphs only: children in order of appearance, and ``->`` edges between them.
    children: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    #: Graphs only, filled in by passes: one-shot children run before the first step,
    #: then the order children run in every step.
    prologue: tuple[str, ...] = ()
    schedule: tuple[str, ...] | None = None
    #: Children of plain graphs inlined here by the flatten pass: child -> the graph it came from.
    inlined_from: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    span: Span | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self):
        if self.kind is Kind.LEAF and self.children:
            raise ValueError(f"leaf node '{self.name}' cannot have children")


@attrs.frozen
class Plan:
    """All nodes by instance name; ``root`` is the root graph."""

    nodes: Mapping[str, PlanNode] = attrs.field(converter=_frozen_mapping)
    root: str = "root"
    #: Compile warnings (nodes that can never run …), as rendered diagnostics.
    warnings: tuple[str, ...] = attrs.field(default=(), eq=False)

    def __getitem__(self, name: str) -> PlanNode:
        return self.nodes[name]

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def node_dict(self) -> dict[str, PlanNode]:
        """The nodes as a new dict, to build a changed plan from (with :func:`owned`): copied
        at C speed (``dict()`` of the read-only view would go key by key)."""
        return self.nodes.copy()  # type: ignore[attr-defined]  # the converter made it a MappingProxyType

    def replace(self, *changed: PlanNode, removed: tuple[str, ...] = ()) -> Plan:
        """A new plan with ``changed`` nodes put in (by name) and ``removed`` taken out."""
        nodes = {name: node for name, node in self.nodes.items() if name not in removed}
        nodes.update((node.name, node) for node in changed)
        return attrs.evolve(self, nodes=nodes)

    def without(self, *names: str) -> Plan:
        """Take each of ``names`` and everything below it out, in turn, joining each
        one's predecessors to its successors. Linear in what goes and the graphs above
        it (and a copy of the plan's mapping), however many nodes go (the unreachable
        pass removes many at once)."""
        nodes = self.node_dict()
        gone: set[str] = set()
        graphs: dict[str, _Joiner] = {}  # parents that lose children, by name
        for name in names:
            node = self.nodes[name]
            if name in gone:
                raise KeyError(name)
            stack = [name]
            while stack:
                descendant = stack.pop()
                gone.add(descendant)
                del nodes[descendant]
                stack.extend(child for child in self.nodes[descendant].children if child not in gone)
            assert node.parent is not None, "the root cannot be removed"
            if node.parent not in graphs:
                graphs[node.parent] = _Joiner(self.nodes[node.parent])
            graphs[node.parent].remove(name)
        for parent, joiner in graphs.items():
            if parent not in gone:
                nodes[parent] = attrs.evolve(nodes[parent], children=tuple(joiner.children), edges=tuple(joiner.edges))
        for graph_name in _ancestors(self, names):
            # The parents' schedules, and those of graphs they were inlined into, name the removed nodes.
            graph = nodes.get(graph_name)
            if graph is not None and gone & {*graph.prologue, *(graph.schedule or ()), *graph.inlined_from}:
                nodes[graph.name] = attrs.evolve(
                    graph,
                    prologue=tuple(c for c in graph.prologue if c not in gone),
                    schedule=None if graph.schedule is None else tuple(c for c in graph.schedule if c not in gone),
                    inlined_from={c: g for c, g in graph.inlined_from.items() if c not in gone},
                )
        return attrs.evolve(self, nodes=owned(nodes))

    def walk(self, start: str | None = None) -> Iterator[PlanNode]:
        """Nodes depth first from ``start`` (the root), children in order of appearance."""
        stack = [start or self.root]
        while stack:
            node = self.nodes[stack.pop()]
            yield node
            stack.extend(reversed(node.children))

    def path(self, name: str) -> str:
        """``root/TRAINING_LOADER/TRAINING_BATCH``: the node path errors report."""
        parts = [name]
        while (parent := self.nodes[parts[-1]].parent) is not None:
            parts.append(parent)
        return "/".join(reversed(parts))

    def run_order(self, graph: str) -> tuple[str, ...]:
        """The children of ``graph`` in the order one step runs them: the precomputed
        schedule, or (in an unoptimised plan) the topological order."""
        node = self.nodes[graph]
        return node.schedule if node.schedule is not None else topological_order(node)


def _ancestors(plan: Plan, names: tuple[str, ...]) -> dict[str, None]:
    """The graphs above ``names`` (those that can schedule them), each once, in no set order."""
    above: dict[str, None] = {}
    for name in names:
        parent = plan.nodes[name].parent
        while parent is not None and parent not in above:
            above[parent] = None
            parent = plan.nodes[parent].parent
    return above


class _Joiner:
    """A graph's children and ``->`` edges while children are removed one after the
    other, each one's predecessors joined to its successors. Dicts keep the order
    of appearance: the edges left in theirs, the joined ones after them."""

    def __init__(self, graph: PlanNode):
        self.children = dict.fromkeys(graph.children)
        self.edges = dict.fromkeys(graph.edges)
        self.before: dict[str, dict[str, None]] = {child: {} for child in graph.children}
        self.after: dict[str, dict[str, None]] = {child: {} for child in graph.children}
        for source, target in graph.edges:
            self.after[source][target] = None
            self.before[target][source] = None

    def remove(self, name: str) -> None:
        del self.children[name]
        before, after = self.before.pop(name), self.after.pop(name)
        for source in before:
            del self.edges[source, name], self.after[source][name]
        for target in after:
            del self.edges[name, target], self.before[target][name]
        for source in before:
            for target in after:
                if (source, target) not in self.edges:
                    self.edges[source, target] = None
                    self.after[source][target] = None
                    self.before[target][source] = None


def topological_order(node: PlanNode) -> tuple[str, ...]:
    """Children of a graph ordered by its ``->`` edges; ties go to order of appearance.

    Assumes no cycle (the compiler checks).
    """
    position = {child: index for index, child in enumerate(node.children)}
    indegree = dict.fromkeys(node.children, 0)
    successors: dict[str, list[str]] = {child: [] for child in node.children}
    for source, target in node.edges:
        successors[source].append(target)
        indegree[target] += 1
    ready = [(position[child], child) for child in node.children if indegree[child] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, child = heapq.heappop(ready)
        order.append(child)
        for following in successors[child]:
            indegree[following] -= 1
            if indegree[following] == 0:
                heapq.heappush(ready, (position[following], following))
    return tuple(order)
