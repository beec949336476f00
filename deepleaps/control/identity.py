"""Which node of an edited program is which node of the running one (docs/control.md, "Identity").

Named nodes (``$NAME``) and labelled ones (``*Class as P``: the label is the
instance name) are who their name says, wherever they moved. Unlabelled
anonymous ones (``*Class``, and ``NAME`` for a fresh instance of a definition) are named by the resolver
in order of appearance — ``PrintCommand``, ``PrintCommand_1`` … — so an edited
program that inserts one before another would hand the older node's name,
and with it its counters and state, to the newcomer. Before an edited program
is diffed, its anonymous nodes are matched to the running program's: under
the same parent, with the same class and the same base name, a node written
with the very same arguments is the same node, and the others are paired in
order of appearance. Unpaired newcomers get names the running program does
not use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from deepleaps.compiler.plan import Plan, PlanNode
from deepleaps.control.editscript import plain_arguments
from deepleaps.lang import ast
from deepleaps.lang.visitor import walk

_GENERATED = re.compile(r"^(?P<base>.+?)(?:_(?P<index>[0-9]+))?$")


def generated_base(name: str) -> str:
    """The name a generated name was made from: ``PrintCommand`` for ``PrintCommand_2``."""
    match = _GENERATED.match(name)
    assert match is not None  # the pattern matches any name
    return match.group("base")


def _anonymous(plan: Plan, parent: PlanNode, named: set[str]) -> dict[tuple[str, str], list[PlanNode]]:
    """``parent``'s children that may carry a generated name, by (base name, class), in order."""
    groups: dict[tuple[str, str], list[PlanNode]] = {}
    for name in parent.children:
        if name in named:
            continue
        node = plan.nodes[name]
        groups.setdefault((generated_base(node.name), node.command), []).append(node)
    return groups


def written_names(program: ast.Program) -> set[str]:
    """The instance names a program writes itself: every ``$NAME`` and every label."""
    names = set()
    for node in walk(program):
        if isinstance(node, ast.Node):
            if node.kind is ast.NodeKind.INSTANCE:
                names.add(node.name)
            elif node.label is not None:
                names.add(node.label)
    return names


def match_identities(running: Plan, edited: Plan, named: set[str]) -> Plan:
    """``edited`` with its anonymous nodes renamed after the running nodes they are.

    ``named`` holds the nodes the edited program names itself (:func:`written_names`): they keep their names.
    """
    renames: dict[str, str] = {}
    for parent in edited.nodes.values():
        old_parent = running.nodes.get(renames.get(parent.name, parent.name))
        if not parent.children or old_parent is None:
            continue
        old_groups = _anonymous(running, old_parent, named)
        for key, new_nodes in _anonymous(edited, parent, named).items():
            old_nodes = list(old_groups.get(key, ()))
            pairs: dict[str, str] = {}
            for node in new_nodes:  # the same arguments first
                same = next((old for old in old_nodes if plain_arguments(old) == plain_arguments(node)), None)
                if same is not None:
                    pairs[node.name] = same.name
                    old_nodes.remove(same)
            for node in new_nodes:  # then the rest, in order
                if node.name not in pairs and old_nodes:
                    pairs[node.name] = old_nodes.pop(0).name
            renames.update(pairs)
    taken = set(running.nodes) | {renames.get(name, name) for name in edited.nodes}
    for name in edited.nodes:
        if name not in renames and name in running.nodes and name not in named:
            renames[name] = _fresh(generated_base(name), taken)
            taken.add(renames[name])
    return rename(edited, {old: new for old, new in renames.items() if old != new})


def _fresh(base: str, taken: set[str]) -> str:
    index = 1
    while f"{base}_{index}" in taken:
        index += 1
    return f"{base}_{index}"


def rename(plan: Plan, names: Mapping[str, str]) -> Plan:
    """``plan`` with nodes renamed (``old -> new``), in every place a name appears."""
    if not names:
        return plan

    def to(name: str) -> str:
        return names.get(name, name)

    nodes = {}
    for node in plan.nodes.values():
        cycle = node.run_cycle
        nodes[to(node.name)] = attrs.evolve(
            node,
            name=to(node.name),
            parent=None if node.parent is None else to(node.parent),
            children=tuple(to(child) for child in node.children),
            edges=tuple((to(source), to(target)) for source, target in node.edges),
            run_cycle=None if cycle is None else attrs.evolve(cycle, node=to(cycle.node)),
        )
    return attrs.evolve(plan, nodes=nodes, root=to(plan.root))
