"""Edit scripts (docs/design.md §6): ``diff`` and ``apply`` over source plans, and their JSON form.

Pairs of programs come from two generators: random program texts (trees of
``*Graph``, ``*IterateCommand[data=$xs]`` loaders and ``*PrintCommand`` leaves,
with chains, extra ``$A -> $B`` DAG edges and random arguments and options)
compiled with :func:`deepleaps.compiler.compile_source`; and one compiled plan
changed by random edits made directly on the Plan (add, remove and move
nodes, add and remove edges, set and unset arguments and options, change a
node's class, reorder children).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepleaps.runtime  # noqa: F401 - registers Graph, IterateCommand, PrintCommand
from deepleaps.compiler import Cycle, Kind, OnError, Plan, PlanNode, compile_source
from deepleaps.control.editjson import script_from_data, script_to_data
from deepleaps.control.editscript import (
    OPTIONS,
    AddEdge,
    AddNode,
    EditScript,
    RebindClass,
    RemoveEdge,
    RemoveNode,
    ReorderChildren,
    ScriptError,
    SetArgument,
    UnsetArgument,
    apply,
    diff,
)
from deepleaps.lang import ProgramError, ast

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- values ------------------------------------------------------------------------------------

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda key: key not in ("true", "false", "null"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
VARIABLES = st.builds(ast.Variable, st.from_regex(r"[a-z][a-z0-9_]{0,4}(\.[a-z][a-z0-9_]{0,4})?", fullmatch=True))
VALUES = st.recursive(
    SCALARS | VARIABLES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


def render_value(value: Any) -> str:
    """A value as a literal of the language (written here, independent of the printer)."""
    if isinstance(value, ast.Variable):
        return f"${value.name}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(render_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(key)}={render_value(item)}" for key, item in value.items()) + "}"


def typed(value: Any) -> Any:
    """``value`` with the type of every part spelled out: ``1``, ``1.0`` and ``True`` differ."""
    if isinstance(value, list):
        return ("list", tuple(typed(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple((key, typed(item)) for key, item in value.items()))
    return (type(value).__name__, value)


def strict(plan: Plan) -> dict[str, tuple]:
    """Everything a source plan says, with argument types, for exact comparison."""
    return {
        name: (
            node.command,
            node.kind,
            tuple(sorted((key, typed(value)) for key, value in node.args.items())),
            node.parent,
            node.repeat,
            node.finish,
            node.run_cycle,
            node.on_error,
            node.children,
            tuple(node.edges),
        )
        for name, node in plan.nodes.items()
    } | {"<root>": (plan.root,)}


def assert_same_plan(actual: Plan, expected: Plan) -> None:
    assert actual == expected
    assert strict(actual) == strict(expected)


# ---- random programs --------------------------------------------------------------------------

CLASSES = {"graph": "Graph", "loader": "IterateCommand", "leaf": "PrintCommand"}


@st.composite
def options(draw, kind: str) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if draw(st.booleans()):
        chosen["repeat"] = draw(st.sampled_from([-1, 1, 2, 5]))
    if draw(st.integers(0, 4)) == 0:
        chosen["finish"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        counter = draw(st.sampled_from(["step", "total_step"]))
        chosen["run_cycle"] = f"root.{counter}:{draw(st.integers(1, 9))}"
    if draw(st.integers(0, 3)) == 0:
        chosen["on_error"] = draw(st.sampled_from(["stop", "skip", "remove"]))
    return chosen


@st.composite
def trees(draw, depth: int = 0) -> dict:
    """A node of a program: its kind, arguments, children (as chains) and extra edges."""
    kind = draw(st.sampled_from(["leaf", "leaf", "graph", "loader"] if depth < 3 else ["leaf"]))
    arguments = draw(options(kind))
    if kind == "leaf" and draw(st.booleans()):
        arguments["content"] = draw(VALUES)
    if kind == "loader":
        arguments["data"] = draw(st.just(ast.Variable("xs")) | VALUES)
    node = {"kind": kind, "args": arguments, "chains": [], "edges": []}
    if kind != "leaf":
        children = draw(st.lists(trees(depth + 1), max_size=4))
        breaks = draw(st.lists(st.booleans(), min_size=len(children), max_size=len(children)))
        node["chains"] = split_into_chains(children, breaks)
        # Extra `$A -> $B` chains, forward in order of appearance (no cycle), none a chain already has.
        chained = {(i - 1, i) for i in range(1, len(children)) if not breaks[i]}
        pairs = [(i, j) for i in range(len(children)) for j in range(i + 1, len(children)) if (i, j) not in chained]
        node["edges"] = draw(st.lists(st.sampled_from(pairs), max_size=3, unique=True)) if pairs else []
    return node


def split_into_chains(children: list, breaks: list[bool]) -> list[list]:
    chains: list[list] = []
    for child, new_chain in zip(children, breaks):
        if not chains or new_chain:
            chains.append([])
        chains[-1].append(child)
    return chains


@st.composite
def program_texts(draw) -> str:
    children = draw(st.lists(trees(1), min_size=1, max_size=4))
    root = {
        "kind": "graph",
        "args": {},
        "chains": split_into_chains(children, draw(st.lists(st.booleans(), min_size=len(children), max_size=4))),
        "edges": [],
    }
    return render_program(root)


def render_program(root: dict) -> str:
    counts: dict[str, int] = {}

    def name_for(cls: str) -> str:
        number = counts.get(cls, 0)
        counts[cls] = number + 1
        return cls if number == 0 else f"{cls}_{number}"

    def render(node: dict, head: str) -> tuple[str, str]:
        """The text of ``node`` and its instance name (names go in order of appearance)."""
        name = "root" if head == "$root" else name_for(CLASSES[node["kind"]])
        arguments = ", ".join(f"{key}={render_value(value)}" for key, value in node["args"].items())
        text = head + (f"[{arguments}]" if arguments else "")
        groups, names = [], []
        for chain in node["chains"]:
            parts = []
            for child in chain:
                child_text, child_name = render(child, f"*{CLASSES[child['kind']]}")
                parts.append(child_text)
                names.append(child_name)
            groups.append(" -> ".join(parts))
        groups += [f"${names[i]} -> ${names[j]}" for i, j in node["edges"]]
        if groups:
            text += "( " + ", ".join(groups) + " )"
        return text, name

    return render(root, "$root")[0]


def compiled(text: str) -> Plan:
    return compile_source(text).source


# ---- random edits of a plan ----------------------------------------------------------------------


def _put(nodes: dict[str, PlanNode], node: PlanNode) -> None:
    nodes[node.name] = node


def _subtree(nodes: dict[str, PlanNode], name: str) -> list[str]:
    found, stack = [], [name]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(nodes[current].children)
    return found


def _detach(nodes: dict[str, PlanNode], name: str) -> None:
    """Take ``name`` out of its parent's children and edges."""
    parent = nodes[nodes[name].parent]
    _put(
        nodes,
        attrs.evolve(
            parent,
            children=tuple(child for child in parent.children if child != name),
            edges=tuple(edge for edge in parent.edges if name not in edge),
        ),
    )


def _attach(nodes: dict[str, PlanNode], name: str, parent_name: str, position: int) -> None:
    parent = nodes[parent_name]
    children = list(parent.children)
    children.insert(min(position, len(children)), name)
    _put(nodes, attrs.evolve(parent, children=tuple(children)))
    _put(nodes, attrs.evolve(nodes[name], parent=parent_name))


@st.composite
def edited(draw, plan: Plan) -> Plan:
    """``plan`` after a few random edits made on its nodes directly."""
    nodes = dict(plan.nodes)
    fresh = iter(range(1000))
    for _ in range(draw(st.integers(1, 6))):
        graphs = sorted(name for name, node in nodes.items() if node.kind.has_children)
        others = sorted(name for name in nodes if name != plan.root)
        edit = draw(st.sampled_from(["add", "remove", "move", "edge", "unedge", "set", "unset", "rebind", "reorder"]))
        if edit == "add":
            kind = draw(st.sampled_from(list(Kind)))
            cls = {Kind.GRAPH: "Graph", Kind.LOADER: "IterateCommand", Kind.LEAF: "PrintCommand"}[kind]
            name = f"New{next(fresh)}"
            repeat = draw(st.sampled_from([-1, 1, 3])) if draw(st.booleans()) else (-1 if kind is Kind.LOADER else 1)
            args = draw(st.dictionaries(KEYS.filter(lambda key: key not in OPTIONS), VALUES, max_size=2))
            _put(nodes, PlanNode(name, cls, kind, args=args, repeat=repeat))
            parent = draw(st.sampled_from(graphs))
            _attach(nodes, name, parent, draw(st.integers(0, len(nodes[parent].children))))
        elif edit == "remove" and others:
            name = draw(st.sampled_from(others))
            _detach(nodes, name)
            for gone in _subtree(nodes, name):
                del nodes[gone]
        elif edit == "move" and others:
            name = draw(st.sampled_from(others))
            targets = [graph for graph in graphs if graph not in _subtree(nodes, name)]
            target = draw(st.sampled_from(targets))
            _detach(nodes, name)
            _attach(nodes, name, target, draw(st.integers(0, len(nodes[target].children))))
        elif edit == "edge":
            graph = nodes[draw(st.sampled_from(graphs))]
            pairs = [
                (a, b)
                for i, a in enumerate(graph.children)
                for b in graph.children[i + 1 :]
                if (a, b) not in graph.edges
            ]
            if pairs:
                _put(nodes, attrs.evolve(graph, edges=(*graph.edges, draw(st.sampled_from(pairs)))))
        elif edit == "unedge":
            graph = nodes[draw(st.sampled_from(graphs))]
            if graph.edges:
                edge = draw(st.sampled_from(graph.edges))
                _put(nodes, attrs.evolve(graph, edges=tuple(e for e in graph.edges if e != edge)))
        elif edit == "set":
            node = nodes[draw(st.sampled_from(sorted(nodes)))]
            option = draw(st.sampled_from(["argument", "repeat", "finish", "run_cycle", "on_error"]))
            if option == "argument":
                key = draw(KEYS.filter(lambda key: key not in OPTIONS))
                node = attrs.evolve(node, args={**node.args, key: draw(VALUES)})
            elif option == "repeat":
                node = attrs.evolve(node, repeat=draw(st.sampled_from([-1, 1, 2, 7])))
            elif option == "finish":
                node = attrs.evolve(node, finish=not node.finish)
            elif option == "run_cycle":
                node = attrs.evolve(node, run_cycle=Cycle("root", "step", draw(st.integers(1, 5))))
            else:
                node = attrs.evolve(node, on_error=draw(st.sampled_from(list(OnError))))
            _put(nodes, node)
        elif edit == "unset":
            node = nodes[draw(st.sampled_from(sorted(nodes)))]
            if node.args:
                key = draw(st.sampled_from(sorted(node.args)))
                _put(nodes, attrs.evolve(node, args={k: v for k, v in node.args.items() if k != key}))
            elif node.run_cycle is not None:
                _put(nodes, attrs.evolve(node, run_cycle=None))
        elif edit == "rebind" and others:
            node = nodes[draw(st.sampled_from(others))]
            choices = [("Graph", Kind.GRAPH), ("IterateCommand", Kind.LOADER), ("SetCommand", Kind.LEAF)]
            command, kind = draw(st.sampled_from([c for c in choices if node.children == () or c[1].has_children]))
            # A node of another class keeps its repeat, or takes the new class's default.
            repeat = draw(st.sampled_from([node.repeat, -1 if kind is Kind.LOADER else 1]))
            _put(nodes, attrs.evolve(node, command=command, kind=kind, repeat=repeat))
        elif edit == "reorder":
            graph = nodes[draw(st.sampled_from(graphs))]
            _put(nodes, attrs.evolve(graph, children=tuple(draw(st.permutations(graph.children)))))
    return Plan(nodes, plan.root)


@st.composite
def edited_pairs(draw) -> tuple[Plan, Plan]:
    before = compiled(draw(program_texts()))
    return before, draw(edited(before))


PAIRS = st.tuples(program_texts().map(compiled), program_texts().map(compiled)) | edited_pairs()


# ---- properties ------------------------------------------------------------------------------------


def assert_round_trip(script: EditScript) -> None:
    data = script_to_data(script)
    back = script_from_data(json.loads(json.dumps(data)))
    assert back == script
    assert script_to_data(back) == data  # types too: 1, 1.0 and true stay apart


@SETTINGS
@given(program_texts())
def test_the_generated_programs_compile_with_the_names_they_were_written_with(text):
    plan = compiled(text)
    for name in plan.nodes:
        if name != "root":
            assert f"*{plan[name].command}" in text
    assert plan[plan.root].children


@SETTINGS
@given(PAIRS)
def test_apply_of_diff_gives_the_other_program_both_ways(pair):
    a, b = pair
    forward, backward = diff(a, b, 3), diff(b, a, 4)
    assert_same_plan(apply(a, forward), b)
    assert_same_plan(apply(b, backward), a)
    assert forward.base_version == 3
    assert bool(forward) == bool(backward) == (strict(a) != strict(b))
    assert_round_trip(forward)
    assert_round_trip(backward)


@SETTINGS
@given(PAIRS)
def test_the_json_form_applies_like_the_script(pair):
    a, b = pair
    data = json.loads(json.dumps(script_to_data(diff(a, b))))
    assert_same_plan(apply(a, script_from_data(data)), b)


@SETTINGS
@given(program_texts().map(compiled) | edited_pairs().map(lambda pair: pair[1]))
def test_diff_of_a_plan_with_itself_is_empty(plan):
    script = diff(plan, plan, 7)
    assert script.operations == ()
    assert not script
    assert apply(plan, script) == plan
    assert_round_trip(script)


@SETTINGS
@given(PAIRS)
def test_summary_names_one_line_per_operation(pair):
    script = diff(*pair)
    assert len(script.summary()) == len(script.operations)
    assert all(line[0] in "+-~" for line in script.summary())


@given(VALUES)
@settings(deadline=None)
def test_argument_values_round_trip_through_json(value):
    script = EditScript(
        [SetArgument("n", "k", value), AddNode("m", "root", "PrintCommand", "leaf", {"content": value})]
    )
    assert_round_trip(script)


def test_a_class_change_between_kinds_takes_the_new_kinds_default_repeat():
    before = compiled("$root( *Graph( *PrintCommand ), *IterateCommand[data=$xs], *PrintCommand[repeat=2] )")
    after = before.replace(
        attrs.evolve(before["Graph"], command="IterateCommand", kind=Kind.LOADER, repeat=-1),
        attrs.evolve(before["IterateCommand"], command="Graph", kind=Kind.GRAPH, repeat=1),
        attrs.evolve(before["PrintCommand_1"], command="IterateCommand", kind=Kind.LOADER, repeat=2),
    )
    assert_same_plan(apply(before, diff(before, after)), after)
    assert_same_plan(apply(after, diff(after, before)), before)


def test_a_graph_moved_with_its_children_is_removed_and_added_with_them():
    before = compiled("$root( *Graph( *Graph( *PrintCommand -> *PrintCommand ) ), *Graph )")
    inner, outer, target = before["Graph_1"], before["Graph"], before["Graph_2"]
    after = before.replace(
        attrs.evolve(inner, parent="Graph_2"),
        attrs.evolve(outer, children=()),
        attrs.evolve(target, children=("Graph_1",)),
    )
    script = diff(before, after)
    assert {op.name for op in script.operations if isinstance(op, RemoveNode)} == {
        "Graph_1",
        "PrintCommand",
        "PrintCommand_1",
    }
    assert_same_plan(apply(before, script), after)
    assert_same_plan(apply(after, diff(after, before)), before)


def test_edges_come_back_in_their_order():
    before = compiled("$root( *PrintCommand -> *PrintCommand -> *PrintCommand, *PrintCommand )")
    root = before["root"]
    swapped = before.replace(attrs.evolve(root, edges=tuple(reversed(root.edges))))
    assert_same_plan(apply(before, diff(before, swapped)), swapped)
    fewer = before.replace(attrs.evolve(root, edges=root.edges[1:]))
    assert_same_plan(apply(fewer, diff(fewer, before)), before)


# ---- scripts that do not fit -------------------------------------------------------------------------

BASE = '$root( *Graph( *PrintCommand[content=1] -> *PrintCommand[content="b"], *IterateCommand[data=$xs] ), *Graph )'


def bad_scripts() -> list[tuple[str, list]]:
    return [
        ("remove a missing node", [RemoveNode("Nope")]),
        ("add an existing node", [AddNode("PrintCommand", "Graph", "PrintCommand", "leaf")]),
        ("add under a missing parent", [AddNode("X", "Nope", "PrintCommand", "leaf")]),
        ("add under a leaf", [AddNode("X", "PrintCommand", "PrintCommand", "leaf")]),
        ("edge to a non-child", [AddEdge("Graph", "PrintCommand", "Graph_1")]),
        ("edge from a non-child", [AddEdge("root", "PrintCommand", "Graph")]),
        ("edge in a missing graph", [AddEdge("Nope", "a", "b")]),
        ("an edge twice", [AddEdge("Graph", "PrintCommand", "PrintCommand_1")]),
        ("remove a missing edge", [RemoveEdge("Graph", "PrintCommand_1", "PrintCommand")]),
        ("remove a node with children", [RemoveNode("Graph")]),
        ("remove a node with edges", [RemoveNode("PrintCommand")]),
        ("remove the root", [RemoveNode("root")]),
        ("set an argument of a missing node", [SetArgument("Nope", "content", 1)]),
        ("unset an argument of a missing node", [UnsetArgument("Nope", "content")]),
        ("rebind a graph with children as a leaf", [RebindClass("Graph", "PrintCommand", "leaf")]),
        ("rebind a missing node", [RebindClass("Nope", "Graph", "graph")]),
        ("reorder other children", [ReorderChildren("Graph", ["PrintCommand", "IterateCommand"])]),
        ("reorder a missing graph", [ReorderChildren("Nope", [])]),
        (
            "fail after operations that applied",
            [
                AddNode("X", "Graph_1", "PrintCommand", "leaf", {"content": 5}),
                SetArgument("PrintCommand", "content", 2),
                RemoveEdge("Graph", "PrintCommand", "PrintCommand_1"),
                RemoveNode("Nope"),
            ],
        ),
    ]


@pytest.mark.parametrize(("what", "operations"), bad_scripts(), ids=[what for what, _ in bad_scripts()])
def test_a_script_that_does_not_fit_raises_script_error_and_changes_nothing(what, operations):
    plan = compiled(BASE)
    before = strict(plan)
    with pytest.raises(ScriptError) as raised:
        apply(plan, EditScript(operations, 1))
    assert isinstance(raised.value, ProgramError)
    assert "edit script does not apply" in raised.value.render()
    assert strict(plan) == before
    assert plan == compiled(BASE)


@SETTINGS
@given(PAIRS, st.data())
def test_a_script_for_another_program_fails_cleanly_or_applies(pair, data):
    """A script applied to a program it was not computed for raises ScriptError or gives a plan; never another error."""
    a, b = pair
    other = compiled(data.draw(program_texts()))
    before = strict(other)
    with contextlib.suppress(ScriptError):
        apply(other, diff(a, b))
    assert strict(other) == before


def test_script_from_data_rejects_what_is_not_a_script():
    for data in (None, [], {"schema": "deepleaps.ast/1"}, {"schema": "deepleaps.edit/1", "operations": [{"op": "x"}]}):
        with pytest.raises(ProgramError):
            script_from_data(data)
    with pytest.raises(ProgramError):
        script_from_data({"schema": "deepleaps.edit/1", "operations": [{"op": "remove_node"}]})


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        ({"op": "remove_node", "name": "A"}, "'operations' must be a list"),
        (["remove_node"], "an operation is a mapping with its 'op', got 'remove_node'"),
        ([{"op": ["remove_node"]}], "unknown operation ['remove_node']"),
        ([{"op": "remove_node", "name": 5}], "'remove_node': 'name' must be a name, got 5"),
        ([{"op": "add_edge", "graph": "G", "source": "A", "target": None}], "'target' must be a name, got None"),
        (
            [{"op": "add_node", "name": "P", "parent": "G", "command": "Note", "kind": "leaf", "arguments": "x"}],
            "'arguments' must be a mapping, got 'x'",
        ),
        (
            [{"op": "add_node", "name": "P", "parent": "G", "command": "Note", "kind": "leaf", "position": True}],
            "'position' must be an integer, got True",
        ),
        ([{"op": "reorder_children", "graph": "G", "children": ["B", 1]}], "'children' must be a list of names"),
    ],
)
def test_script_from_data_names_the_field_of_the_wrong_type(operations, message):
    """Each is refused here, with a sentence, rather than failing later inside apply or the compiler."""
    with pytest.raises(ProgramError) as raised:
        script_from_data({"schema": "deepleaps.edit/1", "base_version": 1, "operations": operations})
    assert message in raised.value.render()
