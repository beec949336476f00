"""Edit scripts: the difference between two programs, as data (docs/design.md §6).

A script is a list of operations over instance names — add or remove a node,
add or remove an edge, set or unset an argument, rebind a node's class,
reorder a graph's children — computed by :func:`diff` from two source plans
and replayed by :func:`apply`. ``apply(a, diff(a, b)) == b`` and the inverse
of ``diff(a, b)`` is ``diff(b, a)``. Nodes that no operation names keep their
counters and state when the result is installed.

Its JSON form is in :mod:`deepleaps.control.editjson`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from deepleaps.compiler.arguments import OPTION_KEYS, OptionError, option_value
from deepleaps.compiler.plan import Cycle, Kind, OnError, Plan, PlanNode, owned
from deepleaps.lang import ast
from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.lang.printer import inline

#: Node options that edit scripts treat as arguments of the node.
OPTIONS = OPTION_KEYS


@attrs.frozen
class AddNode:
    name: str
    parent: str
    command: str
    kind: str
    #: Arguments and options, as plain values (see :func:`plain_arguments`).
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    #: Where it goes among the parent's children.
    position: int = -1


@attrs.frozen
class RemoveNode:
    name: str


@attrs.frozen
class AddEdge:
    graph: str
    source: str
    target: str


@attrs.frozen
class RemoveEdge:
    graph: str
    source: str
    target: str


@attrs.frozen
class SetArgument:
    node: str
    key: str
    value: Any


@attrs.frozen
class UnsetArgument:
    node: str
    key: str


@attrs.frozen
class RebindClass:
    node: str
    command: str
    kind: str


@attrs.frozen
class ReorderChildren:
    graph: str
    children: tuple[str, ...] = attrs.field(converter=ast.as_tuple)


Operation = AddNode | RemoveNode | AddEdge | RemoveEdge | SetArgument | UnsetArgument | RebindClass | ReorderChildren


@attrs.frozen
class EditScript:
    """Operations computed against program version ``base_version``."""

    operations: tuple[Operation, ...] = attrs.field(converter=ast.as_tuple)
    base_version: int | None = None

    def __bool__(self) -> bool:
        return bool(self.operations)

    def touched(self) -> set[str]:
        """Nodes whose command instance must be rebuilt (new or changed)."""
        names = set()
        for operation in self.operations:
            if isinstance(operation, AddNode):
                names.add(operation.name)
            elif isinstance(operation, SetArgument | UnsetArgument | RebindClass):
                names.add(operation.node)
        return names

    def summary(self) -> list[str]:
        """One line per operation, for people."""
        return [describe(operation) for operation in self.operations]


# ---- arguments as plain values ------------------------------------------------------


def plain_arguments(node: PlanNode) -> dict[str, Any]:
    """A node's arguments and non-default options in one mapping."""
    values = dict(node.args)
    if node.repeat != _default_repeat(node.kind):
        values["repeat"] = node.repeat
    if node.finish:
        values["finish"] = True
    if node.run_cycle is not None:
        values["run_cycle"] = str(node.run_cycle)
    if node.on_error is not OnError.STOP:
        values["on_error"] = node.on_error.value
    return values


def _default_repeat(kind: Kind) -> int:
    return -1 if kind is Kind.LOADER else 1


def _with_argument(node: PlanNode, key: str, value: Any) -> PlanNode:
    """``node`` with an argument or option set; an option checked as the resolver checks it."""
    if key not in OPTIONS:
        return attrs.evolve(node, args={**node.args, key: value})
    option: dict[str, Any] = {key: value}
    if not isinstance(value, Cycle | OnError):  # else already in the Plan's form
        try:
            option[key] = option_value(key, value)
        except OptionError as problem:
            raise ScriptError(f"node '{node.name}': {problem}") from None
    return attrs.evolve(node, **option)


def _without_argument(node: PlanNode, key: str) -> PlanNode:
    if key == "repeat":
        return attrs.evolve(node, repeat=_default_repeat(node.kind))
    if key == "finish":
        return attrs.evolve(node, finish=False)
    if key == "run_cycle":
        return attrs.evolve(node, run_cycle=None)
    if key == "on_error":
        return attrs.evolve(node, on_error=OnError.STOP)
    return attrs.evolve(node, args={k: v for k, v in node.args.items() if k != key})


def value_to_ast(value: Any) -> ast.Value:
    """A plain argument value as an AST literal (the JSON value schema)."""
    if isinstance(value, ast.Variable):
        return ast.Variable(value.name)
    if value is None:
        return ast.Null()
    if isinstance(value, bool):
        return ast.Boolean(value)
    if isinstance(value, int):
        return ast.Integer(value)
    if isinstance(value, float):
        return ast.Float(value)
    if isinstance(value, str):
        return ast.String(value)
    if isinstance(value, list | tuple):
        return ast.List([value_to_ast(item) for item in value])
    if isinstance(value, Mapping):
        return ast.Mapping([ast.Argument(str(key), value_to_ast(item)) for key, item in value.items()])
    raise TypeError(f"an argument value cannot be {type(value).__name__}: {value!r}")


def value_from_ast(value: ast.Value) -> Any:
    return ast.python_value(value)


# ---- diff ---------------------------------------------------------------------------------


def diff(old: Plan, new: Plan, base_version: int | None = None, among: Iterable[str] | None = None) -> EditScript:
    """The operations that turn source plan ``old`` into ``new``.

    ``among``: the names of every node that may differ between them (what a resolver or
    a removal made or changed; see :func:`changed`), so that the diff takes time in
    proportion to those rather than to the programs. Nodes that are the same object in
    both are skipped either way. Given ``among``, operations on different graphs come in
    tree order rather than in the order of the plans' mappings (they commute).
    """
    names = old.nodes.keys() | new.nodes.keys() if among is None else set(among)
    differ = {name for name in names if old.nodes.get(name) is not new.nodes.get(name)}
    order = _Order(in_tree_order=among is not None)
    moved = {
        name for name in differ if name in old.nodes and name in new.nodes and old[name].parent != new[name].parent
    }
    # A moved node takes what is below it along: all of it is removed and added again.
    moved |= {below.name for name in moved for below in old.walk(name)} & new.nodes.keys()
    differ |= moved
    removed = {name for name in differ if name not in new.nodes} | moved
    added = {name for name in differ if name not in old.nodes} | moved
    operations: list[Operation] = []
    kept = {name: _kept_edges(old[name], new[name]) for name in differ if name in old.nodes and name not in removed}
    for name in order.of(old, differ):
        for source, target in old[name].edges:
            if (source, target) not in kept.get(name, ()):
                operations.append(RemoveEdge(name, source, target))
    for top in reversed(order.tops(old, removed)):  # children before parents
        operations.extend(RemoveNode(node.name) for node in reversed(list(old.walk(top))) if node.name in removed)
    for name in order.of(old, differ - removed):
        before, after = old[name], new[name]
        if (before.command, before.kind) != (after.command, after.kind):
            operations.append(RebindClass(name, after.command, after.kind.value))
        old_args, new_args = plain_arguments(before), plain_arguments(after)
        for key in old_args.keys() - new_args.keys():
            operations.append(UnsetArgument(name, key))
        for key, value in new_args.items():
            if key not in old_args or not _same(old_args[key], value):
                operations.append(SetArgument(name, key, value))
    for top in order.tops(new, added):
        for node in new.walk(top):
            if node.name in added:
                assert node.parent is not None  # the root is in both plans
                position = order.index(new, node.name)
                operations.append(
                    AddNode(node.name, node.parent, node.command, node.kind.value, plain_arguments(node), position)
                )
    for name in order.of(new, differ):
        for source, target in new[name].edges:
            if (source, target) not in kept.get(name, ()):
                operations.append(AddEdge(name, source, target))
    # Only the nodes that differ are named by the operations (a whole diff: all of them).
    result = apply(
        old if among is None else Plan(owned({n: old[n] for n in differ if n in old.nodes}), old.root), operations
    )
    for name in order.of(new, differ):
        graph = new[name]
        if graph.kind.has_children and result[name].children != graph.children:
            operations.append(ReorderChildren(name, graph.children))
    return EditScript(operations, base_version)


class _Order:
    """The order a diff names nodes in: that of the plans' mappings (a whole diff), or tree
    order (a diff among given names, which must not look at every node to sort them)."""

    def __init__(self, in_tree_order: bool):
        self.in_tree_order = in_tree_order
        self._indices: dict[tuple[int, str], dict[str, int]] = {}

    def index(self, plan: Plan, name: str) -> int:
        """Where ``name`` is among its parent's children."""
        parent = plan[name].parent
        assert parent is not None
        key = (id(plan), parent)
        if key not in self._indices:
            self._indices[key] = {child: i for i, child in enumerate(plan[parent].children)}
        return self._indices[key][name]

    def _position(self, plan: Plan, name: str) -> tuple[int, ...]:
        """The path from the root as child indices: sorted, these give tree order."""
        path = []
        while plan[name].parent is not None:
            path.append(self.index(plan, name))
            name = plan[name].parent  # type: ignore[assignment]
        return tuple(reversed(path))

    def of(self, plan: Plan, names: set[str]) -> list[str]:
        """``names`` that ``plan`` has, in order."""
        if not self.in_tree_order:
            return [name for name in plan.nodes if name in names]
        return sorted((name for name in names if name in plan.nodes), key=lambda name: self._position(plan, name))

    def tops(self, plan: Plan, names: set[str]) -> list[str]:
        """Those of ``names`` whose parent is not among them, in tree order."""
        tops = [name for name in names if plan[name].parent not in names]
        return sorted(tops, key=lambda name: self._position(plan, name))


def _kept_edges(before: PlanNode, after: PlanNode) -> tuple[tuple[str, str], ...]:
    """The edges of a graph that a diff leaves in place: the longest start of ``after``'s edges
    that ``before``'s edges begin with once those ``after`` lacks are taken out. The others are
    removed and added (again), so that the edges end up in ``after``'s order."""
    staying = [edge for edge in before.edges if edge in after.edges]
    count = 0
    while count < len(staying) and staying[count] == after.edges[count]:
        count += 1
    return tuple(staying[:count])


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same type (``1`` is not ``1.0`` or ``True``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def changed(plan: Plan, script: EditScript) -> set[str]:
    """The nodes that applying ``script`` to ``plan`` adds, removes or changes (a graph
    changes with its children and edges): what :func:`diff` and the checks and the
    compiler of a change look at, rather than the whole program."""
    names: set[str] = set()
    for operation in script.operations:
        if isinstance(operation, AddNode):
            names.update((operation.name, operation.parent))
        elif isinstance(operation, RemoveNode):
            names.add(operation.name)
            if operation.name in plan.nodes and plan[operation.name].parent is not None:
                names.add(plan[operation.name].parent)  # type: ignore[arg-type]
        elif isinstance(operation, AddEdge | RemoveEdge | ReorderChildren):
            names.add(operation.graph)
        else:
            names.add(operation.node)
    return names


# ---- apply --------------------------------------------------------------------------------


class ScriptError(ProgramError):
    """An edit script that does not fit the program it is applied to."""

    def __init__(self, message: str):
        super().__init__([Diagnostic(f"edit script does not apply: {message}")])


def apply(plan: Plan, operations: Iterable[Operation] | EditScript) -> Plan:
    """The source plan ``plan`` with ``operations`` applied, in order.

    Raises:
        ScriptError: an operation names a node or edge that is not there.
    """
    if isinstance(operations, EditScript):
        operations = operations.operations
    nodes = plan.node_dict()

    def need(name: str) -> PlanNode:
        if name not in nodes:
            raise ScriptError(f"there is no node '{name}'")
        return nodes[name]

    for operation in operations:
        if isinstance(operation, AddNode):
            if operation.name in nodes:
                raise ScriptError(f"node '{operation.name}' exists already")
            parent = need(operation.parent)
            if not parent.kind.has_children:
                raise ScriptError(f"'{parent.name}' is a leaf and cannot have children")
            kind = _kind(operation.kind)
            node = PlanNode(operation.name, operation.command, kind, parent=parent.name, repeat=_default_repeat(kind))
            for key, value in operation.arguments.items():
                node = _with_argument(node, key, value)
            nodes[node.name] = node
            children = list(parent.children)
            position = operation.position if 0 <= operation.position <= len(children) else len(children)
            children.insert(position, node.name)
            nodes[parent.name] = attrs.evolve(parent, children=tuple(children))
        elif isinstance(operation, RemoveNode):
            node = need(operation.name)
            if node.children:
                raise ScriptError(f"node '{node.name}' still has children ({', '.join(node.children)})")
            if node.parent is None:
                raise ScriptError("the root cannot be removed")
            parent = nodes[node.parent]
            if any(operation.name in edge for edge in parent.edges):
                raise ScriptError(f"node '{node.name}' still has edges in '{parent.name}'")
            nodes[parent.name] = attrs.evolve(parent, children=tuple(c for c in parent.children if c != node.name))
            del nodes[node.name]
        elif isinstance(operation, AddEdge | RemoveEdge):
            graph = need(operation.graph)
            edge = (operation.source, operation.target)
            for end in edge:
                if end not in graph.children:
                    raise ScriptError(f"'{end}' is not a child of '{graph.name}'")
            if isinstance(operation, AddEdge):
                if edge in graph.edges:
                    raise ScriptError(f"edge {edge[0]} -> {edge[1]} exists already in '{graph.name}'")
                nodes[graph.name] = attrs.evolve(graph, edges=(*graph.edges, edge))
            else:
                if edge not in graph.edges:
                    raise ScriptError(f"there is no edge {edge[0]} -> {edge[1]} in '{graph.name}'")
                nodes[graph.name] = attrs.evolve(graph, edges=tuple(e for e in graph.edges if e != edge))
        elif isinstance(operation, SetArgument):
            nodes[operation.node] = _with_argument(need(operation.node), operation.key, operation.value)
        elif isinstance(operation, UnsetArgument):
            nodes[operation.node] = _without_argument(need(operation.node), operation.key)
        elif isinstance(operation, RebindClass):
            node = need(operation.node)
            kind = _kind(operation.kind)
            if node.children and not kind.has_children:
                raise ScriptError(f"'{node.name}' has children; class {operation.command} is a leaf")
            # A repeat at the old kind's default becomes the new kind's default, as diff assumes.
            repeat = _default_repeat(kind) if node.repeat == _default_repeat(node.kind) else node.repeat
            nodes[node.name] = attrs.evolve(node, command=operation.command, kind=kind, repeat=repeat)
        elif isinstance(operation, ReorderChildren):
            graph = need(operation.graph)
            if sorted(graph.children) != sorted(operation.children):
                raise ScriptError(f"reordering '{graph.name}' must keep its children")
            nodes[graph.name] = attrs.evolve(graph, children=operation.children)
        else:
            raise ScriptError(f"unknown operation {operation!r}")
    return Plan(owned(nodes), plan.root)


def _kind(name: str) -> Kind:
    try:
        return Kind(name)
    except ValueError:
        raise ScriptError(f"'{name}' is not a kind of node ({', '.join(kind.value for kind in Kind)})") from None


def describe(operation: Operation) -> str:
    if isinstance(operation, AddNode):
        return f"+ {operation.name} ({operation.command}) in {operation.parent}"
    if isinstance(operation, RemoveNode):
        return f"- {operation.name}"
    if isinstance(operation, AddEdge):
        return f"+ {operation.source} -> {operation.target} in {operation.graph}"
    if isinstance(operation, RemoveEdge):
        return f"- {operation.source} -> {operation.target} in {operation.graph}"
    if isinstance(operation, SetArgument):
        return f"~ {operation.node}.{operation.key} = {inline(value_to_ast(operation.value))}"
    if isinstance(operation, UnsetArgument):
        return f"~ {operation.node}.{operation.key} unset"
    if isinstance(operation, RebindClass):
        return f"~ {operation.node} is now a {operation.command}"
    return f"~ {operation.graph} children: {', '.join(operation.children)}"
