"""Views of a Plan: DOT (checked by Graphviz itself), JSON data and the text tree."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import attrs
import pytest

import deepleaps.runtime.commands  # noqa: F401 - registers the built-in commands
from deepleaps.compiler import Kind, Plan, PlanNode, compile_source
from deepleaps.compiler.dot import label, to_dot
from deepleaps.compiler.views import SCHEMA, format_value, plan_to_data, plan_tree
from deepleaps.lang import Variable
from deepleaps.lang.programfile import load_program_file
from deepleaps.runtime import NodeState

#: DEFINE entries of built-in commands, shaped like the seed's program.
DEFINITIONS = """\
DEFINE:
  SETUP:
    command: SetCommand
    args: {key: ready, value: true}
    finish: true
  TRAINING_LOADER:
    command: Graph
    repeat: 3
  MODEL_LOAD:
    command: PrintCommand
    args: {content: "load $latest"}
    finish: true
  TRAINING_BATCH:
    command: IterateCommand
    args: {data: $batches}
  TRAINING_STEP:
    command: PrintCommand
    args: {content: step}
  REPORT:
    command: PrintCommand
    run_cycle: TRAINING_BATCH.step:10
    on_error: skip
  MODEL_SAVE:
    command: SetCommand
    args: {key: 'C:\\runs\\', value: '"quoted" [brackets] {braces} <angle> |bar|'}
  A:
    command: PrintCommand
  B:
    command: PrintCommand
  C:
    command: Graph
  D:
    command: PrintCommand
"""

SEED_LIKE = (
    "$root( $SETUP -> $TRAINING_LOADER( $MODEL_LOAD -> $TRAINING_BATCH( $TRAINING_STEP -> $REPORT ) -> MODEL_SAVE ) )"
)

SAMPLES = {
    "seed_like": SEED_LIKE,
    "dag": "$root( $A -> $B, $A -> $C( *Print -> *Print ), $D -> $C, *Print )",
    "nested_loaders": (
        "$root( *IterateCommand[data=$epochs]( *IterateCommand[data=$batches, repeat=5]"
        '( *Print[content=$self.name] -> *Print[run_cycle="IterateCommand_1.step:2"] ) ) )'
    ),
    "run_cycle_finish_on_error": (
        '$root[repeat=10]( *Set[key="k", finish=true] -> *Graph[repeat=-1, run_cycle="root.step:3", on_error="remove"]'
        '( *Print[finish=true, repeat=2] ) -> *Print[run_cycle="root.total_step:2", on_error="skip"] )'
    ),
    "quotes": (
        '$root( *Print[content="say \\"hi\\" [x] {y} <z> |w| \\\\ end \\\\"] -> '
        '*Print[content="tab\\there\\nnew line \\u00e9 \\u0001"] -> '
        '*Print[content=["a\\"b", 1e-3, true, null, $v, [1, 2]]] -> '
        '*Set[key="m", value={lr=1e-3, "odd \\"key\\""=[1]}] -> *Graph[repeat=2] )'
    ),
    "flattened_and_unreachable": (
        '$root( *Print[content="a"] -> *Graph( *Print -> *Print[repeat=2] ) -> *Print, *Print[repeat=0] )'
    ),
    "deep": "$root( " + "*Graph( " * 40 + "*Print" + " )" * 40 + " )",
}


@pytest.fixture(scope="module")
def definitions(tmp_path_factory):
    path = tmp_path_factory.mktemp("defs") / "defs.yaml"
    path.write_text(DEFINITIONS, encoding="utf-8")
    return load_program_file(path)


def compiled(name: str, definitions):
    return compile_source(SAMPLES[name], f"{name}.dl", definitions=definitions)


def dot_program() -> str:
    """Graphviz's ``dot``; the tests that need it skip without it, except on CI."""
    path = shutil.which("dot")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz 'dot' is not installed, and CI needs these tests to run")
        pytest.skip("Graphviz 'dot' is not installed")
    return path


def render_svg(dot_text: str) -> ElementTree.Element:
    result = subprocess.run([dot_program(), "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return ElementTree.fromstring(result.stdout)


SVG = "{http://www.w3.org/2000/svg}"


def svg_parts(svg: ElementTree.Element) -> dict[str, list[str]]:
    """The titles of the SVG's nodes, clusters and edges."""
    parts: dict[str, list[str]] = {"node": [], "cluster": [], "edge": []}
    for group in svg.iter(SVG + "g"):
        kind = group.get("class")
        if kind in parts:
            parts[kind].append(group.find(SVG + "title").text)
    return parts


def svg_texts(svg: ElementTree.Element) -> list[str]:
    return [element.text or "" for element in svg.iter(SVG + "text")]


# ---- DOT ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("optimised", [True, False], ids=["plan", "source"])
def test_dot_is_accepted_by_graphviz(name, optimised, definitions):
    result = compiled(name, definitions)
    plan = result.plan if optimised else result.source
    svg = render_svg(to_dot(plan, title=f'{name} "sample" \\ [x]'))
    parts = svg_parts(svg)
    graphs = {node.name for node in plan.nodes.values() if node.kind.has_children}
    leaves = set(plan.nodes) - graphs
    assert set(parts["cluster"]) == {f"cluster_{graph}" for graph in graphs}
    assert set(parts["node"]) == leaves  # cluster anchors are invisible, so not drawn
    visible_edges = set(parts["edge"])
    for node in plan.nodes.values():
        for source, target in node.edges:
            tail = f"{source}.exit" if source in graphs else source
            assert f"{tail}->{target}" in visible_edges
    assert len(visible_edges) == sum(len(node.edges) for node in plan.nodes.values())


def test_dot_labels_survive_escaping(definitions):
    plan = compiled("quotes", definitions).plan
    texts = [html.unescape(text) for text in svg_texts(render_svg(to_dot(plan)))]
    assert 'content="say \\"hi\\" [x] {y} <z> |w| \\\\ end \\\\"' in texts
    assert 'content="tab\\there\\nnew line é \\u0001"' in texts
    assert 'content=["a\\"b", 0.001, true, null, $v, [1, 2]]' in texts
    assert 'value={lr=0.001, "odd \\"key\\""=[1]}' in texts


def test_dot_labels_name_class_options_and_order(definitions):
    text = to_dot(compiled("seed_like", definitions).plan, title="seed")
    assert 'subgraph "cluster_TRAINING_LOADER" {' in text
    assert 'subgraph "cluster_TRAINING_BATCH" {' in text
    assert "TRAINING_LOADER (Graph)\\lrepeat=3\\lprologue: MODEL_LOAD\\l" in text
    assert "schedule: TRAINING_BATCH, MODEL_SAVE\\l" in text
    assert '"REPORT" [label="REPORT (PrintCommand)\\nrun_cycle=TRAINING_BATCH.step:10, on_error=skip\\n"' in text
    assert '"SETUP" [label="SETUP (SetCommand)\\nfinish, prologue\\nkey=\\"ready\\"\\nvalue=true\\n"' in text
    assert r"key=\"C:\\\\runs\\\\\"\n" in text  # the language's literal "C:\\runs\\", escaped for DOT
    assert '"MODEL_LOAD" -> "TRAINING_BATCH" [lhead="cluster_TRAINING_BATCH"];' in text
    assert '"TRAINING_BATCH.exit" -> "MODEL_SAVE" [ltail="cluster_TRAINING_BATCH"];' in text
    assert "repeat=-1" not in text  # a loader's default is not shown


def test_dot_is_deterministic(definitions):
    for name in SAMPLES:
        first = to_dot(compiled(name, definitions).plan)
        assert to_dot(compiled(name, definitions).plan) == first


def test_dot_of_an_empty_root():
    plan = Plan({"root": PlanNode("root", "Graph", Kind.GRAPH)})
    parts = svg_parts(render_svg(to_dot(plan)))
    assert parts["cluster"] == ["cluster_root"]


def test_label_never_ends_in_a_lone_backslash():
    assert label(["a\\"]) == '"a\\\\\\n"'
    assert label(['say "hi"'], justify="l") == '"say \\"hi\\"\\l"'
    assert label(["bell\x07"]) == '"bell\\\\x07\\n"'


# ---- JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLES))
def test_json_round_trips_and_holds_every_node(name, definitions):
    result = compiled(name, definitions)
    for plan in (result.plan, result.source):
        data = plan_to_data(plan)
        assert json.loads(json.dumps(data, allow_nan=False)) == data
        assert data["schema"] == SCHEMA
        assert data["root"] == "root"
        assert data["nodes"][0]["name"] == "root"
        assert sorted(node["name"] for node in data["nodes"]) == sorted(plan.nodes)
        fields = {field.name for field in attrs.fields(PlanNode)}
        assert all(set(node) == fields for node in data["nodes"])


def test_json_values(definitions):
    data = plan_to_data(compiled("seed_like", definitions).plan)
    nodes = {node["name"]: node for node in data["nodes"]}
    assert nodes["TRAINING_BATCH"]["args"] == {"data": "$batches"}
    assert nodes["TRAINING_BATCH"]["kind"] == "loader"
    assert nodes["REPORT"]["run_cycle"] == "TRAINING_BATCH.step:10"
    assert nodes["REPORT"]["on_error"] == "skip"
    assert nodes["root"]["prologue"] == ["SETUP"]
    assert nodes["root"]["schedule"] == ["TRAINING_LOADER"]
    assert nodes["root"]["edges"] == [["SETUP", "TRAINING_LOADER"]]
    assert nodes["MODEL_SAVE"]["args"]["key"] == "C:\\runs\\"
    assert nodes["SETUP"]["span"] == {"file": "seed_like.dl", "line": 1, "column": 8, "end_line": 1, "end_column": 14}
    source = plan_to_data(compiled("seed_like", definitions).source)
    assert {node["name"]: node["schedule"] for node in source["nodes"]}["root"] is None


def test_json_of_values_json_lacks():
    node = PlanNode("root", "Graph", Kind.GRAPH, args={"x": float("inf"), "when": object})
    data = plan_to_data(Plan({"root": node}))
    assert data["nodes"][0]["args"] == {"x": "inf", "when": str(object)}


# ---- tree -----------------------------------------------------------------------------

SEED_TREE = """\
root (Graph)
  SETUP (SetCommand) [finish, prologue]
  TRAINING_LOADER (Graph) [repeat=3]
    MODEL_LOAD (PrintCommand) [finish, prologue]
    TRAINING_BATCH (IterateCommand)
      TRAINING_STEP (PrintCommand)
      REPORT (PrintCommand) [run_cycle=TRAINING_BATCH.step:10, on_error=skip]
    MODEL_SAVE (SetCommand)
"""


def test_tree_golden(definitions):
    assert plan_tree(compiled("seed_like", definitions).plan) == SEED_TREE
    assert plan_tree(compiled("seed_like", definitions).source) == SEED_TREE.replace(", prologue", "")


def test_tree_children_in_run_order(definitions):
    assert plan_tree(compiled("dag", definitions).plan) == (
        "root (Graph)\n"
        "  A (PrintCommand)\n"
        "  B (PrintCommand)\n"
        "  D (PrintCommand)\n"
        "  C (Graph) [inlined into root]\n"
        "    Print (PrintCommand)\n"
        "    Print_1 (PrintCommand)\n"
        "  Print_2 (PrintCommand)\n"
    )
    assert plan_tree(compiled("flattened_and_unreachable", definitions).plan) == (
        "root (Graph)\n"
        "  Print (PrintCommand)\n"
        "  Graph (Graph) [inlined into root]\n"
        "    Print_1 (PrintCommand)\n"
        "    Print_2 (PrintCommand) [repeat=2]\n"
        "  Print_3 (PrintCommand)\n"
    )
    assert plan_tree(compiled("run_cycle_finish_on_error", definitions).plan) == (
        "root (Graph) [repeat=10]\n"
        "  Set (SetCommand) [finish, prologue]\n"
        "  Graph (Graph) [repeat=-1, run_cycle=root.step:3, on_error=remove]\n"
        "    Print (PrintCommand) [repeat=2, finish]\n"
        "  Print_1 (PrintCommand) [run_cycle=root.total_step:2, on_error=skip]\n"
    )


def test_tree_with_counters(definitions):
    plan = compiled("seed_like", definitions).plan
    states = {name: NodeState() for name in plan.nodes}
    states["root"] = NodeState(step=1, total_step=1)
    states["SETUP"] = NodeState(step=1, total_step=1, finished=True)
    states["TRAINING_BATCH"] = NodeState(step=4, total_step=24, epoch=6)
    del states["MODEL_SAVE"]  # a node the run has not seen yet shows no counters
    lines = plan_tree(plan, states).splitlines()
    assert lines[0] == "root (Graph) step=1 total_step=1"
    assert lines[1] == "  SETUP (SetCommand) [finish, prologue] step=1 total_step=1 finished"
    assert lines[4] == "    TRAINING_BATCH (IterateCommand) step=4 total_step=24 epoch=6"
    assert lines[-1] == "    MODEL_SAVE (SetCommand)"


def test_format_value():
    assert format_value("x" * 50) == '"' + "x" * 38 + "…"
    mapping = {"a": [1, None], "odd key": {"true": 1.0}}
    assert format_value(mapping, width=None) == '{a=[1, null], "odd key"={"true"=1.0}}'
    assert format_value(Variable("latest.id")) == "$latest.id"
