"""Name resolution (docs/design.md §3): what each way of naming a node creates or reuses."""

from __future__ import annotations

import textwrap

import pytest
from recording import RECORDING

from deepleaps.compiler import Cycle, Kind, OnError, compile_source, resolve
from deepleaps.lang import Variable, parse
from deepleaps.lang.programfile import load_program_file

DEFINES = """
DEFINE:
  STEP: {command: Rec, args: {tag: step}}
  LOADER: {command: IterateCommand, args: {data: $xs}}
  EPOCHS: {command: Graph, repeat: 3}
"""


def program_file(tmp_path, text: str = DEFINES, name: str = "commands.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_program_file(path)


def plan_of(text: str, definitions=None):
    """The unoptimised plan of ``text``."""
    return compile_source(text, "prog.dl", definitions=definitions, registry=RECORDING).source


def shape(plan) -> dict[str, tuple]:
    """Every node as ``name: (command, parent)``."""
    return {name: (node.command, node.parent) for name, node in plan.nodes.items()}


# ---- $NAME, NAME, *Class, $root ---------------------------------------------------------


def test_instance_is_created_from_define_under_its_own_name(tmp_path):
    plan = plan_of("$root( $STEP )", program_file(tmp_path))
    step = plan["STEP"]
    assert (step.command, step.kind, step.parent, dict(step.args)) == ("Rec", Kind.LEAF, "root", {"tag": "step"})
    assert plan["root"].children == ("STEP",)


def test_instance_is_reused_within_its_graph(tmp_path):
    plan = plan_of(
        "$root( $EPOCHS( $STEP -> *Rec[tag='x'], $STEP -> *Rec ) )".replace("'", '"'), program_file(tmp_path)
    )
    epochs = plan["EPOCHS"]
    assert epochs.children == ("STEP", "Rec", "Rec_1")
    assert epochs.edges == (("STEP", "Rec"), ("STEP", "Rec_1"))
    assert epochs.repeat == 3


def test_instance_is_reused_across_statements(tmp_path):
    plan = plan_of("$root( $EPOCHS )\n$EPOCHS( $STEP )\n$root( $EPOCHS -> *Rec )", program_file(tmp_path))
    assert shape(plan) == {
        "root": ("Graph", None),
        "EPOCHS": ("Graph", "root"),
        "STEP": ("Rec", "EPOCHS"),
        "Rec": ("Rec", "root"),
    }
    assert plan["root"].edges == (("EPOCHS", "Rec"),)


def test_define_name_without_dollar_makes_fresh_instances(tmp_path):
    plan = plan_of("$root( STEP -> STEP, STEP )\nSTEP", program_file(tmp_path))
    assert plan["root"].children == ("STEP", "STEP_1", "STEP_2", "STEP_3")
    assert plan["root"].edges == (("STEP", "STEP_1"),)
    assert {plan[name].args["tag"] for name in plan["root"].children} == {"step"}


def test_fresh_instance_names_skip_taken_ones(tmp_path):
    # $STEP takes the name STEP; the fresh instances after it are STEP_1 and STEP_2.
    plan = plan_of("$root( $STEP, STEP, STEP )", program_file(tmp_path))
    assert plan["root"].children == ("STEP", "STEP_1", "STEP_2")


def test_class_nodes_are_fresh_instances_with_default_arguments():
    plan = plan_of("*Rec -> *Rec -> *Graph( *Rec )")
    assert shape(plan) == {
        "root": ("Graph", None),
        "Rec": ("Rec", "root"),
        "Rec_1": ("Rec", "root"),
        "Graph": ("Graph", "root"),
        "Rec_2": ("Rec", "Graph"),
    }
    assert dict(plan["Rec"].args) == {}
    assert plan["Graph"].repeat == 1


def test_a_label_names_the_fresh_instance(tmp_path):
    plan = plan_of('$root( *Rec[tag="a"] as A -> STEP as S, *Graph as G( *Rec as B ) -> $A )', program_file(tmp_path))
    assert shape(plan) == {
        "root": ("Graph", None),
        "A": ("Rec", "root"),
        "S": ("Rec", "root"),
        "G": ("Graph", "root"),
        "B": ("Rec", "G"),
    }
    assert dict(plan["S"].args) == {"tag": "step"}
    assert plan["root"].edges == (("A", "S"), ("G", "A"))


def test_generated_names_skip_the_labels_of_the_program(tmp_path):
    # The label is further on, yet the unlabelled node before it does not take its name.
    plan = plan_of("$root( *Rec, STEP, *Rec as Rec, STEP as STEP )", program_file(tmp_path))
    assert plan["root"].children == ("Rec_1", "STEP_1", "Rec", "STEP")


def test_a_labelled_graph_is_extended_by_its_label():
    plan = plan_of("$root( *Graph as G )\n$G( *Rec as R )")
    assert plan["G"].children == ("R",)


def test_class_aliases_name_the_command():
    plan = plan_of('$root( *Print[content="hi"], *GraphCommand )')
    assert plan["Print"].command == "PrintCommand"
    assert plan["GraphCommand"].command == "Graph"


def test_root_always_exists_and_statements_without_it_go_under_it():
    assert shape(plan_of("*Rec")) == {"root": ("Graph", None), "Rec": ("Rec", "root")}
    assert shape(plan_of("$root( *Rec )")) == shape(plan_of("*Rec"))
    root = plan_of("$root[repeat=4]( *Rec )")["root"]
    assert (root.command, root.kind, root.parent, root.repeat) == ("Graph", Kind.GRAPH, None, 4)


def test_statement_naming_a_graph_extends_it():
    plan = plan_of('*Graph[repeat=2]( *Rec[tag="a"] )\n$Graph( *Rec[tag="b"], $Rec -> $Rec_1 )')
    graph = plan["Graph"]
    assert graph.children == ("Rec", "Rec_1")
    assert graph.edges == (("Rec", "Rec_1"),)
    assert graph.repeat == 2
    assert plan["Rec_1"].parent == "Graph"


def test_several_chains_in_a_group_make_a_dag():
    plan = plan_of("$root( *Rec -> *Rec -> *Rec, $Rec -> $Rec_2, *Rec )")
    assert plan["root"].children == ("Rec", "Rec_1", "Rec_2", "Rec_3")
    assert plan["root"].edges == (("Rec", "Rec_1"), ("Rec_1", "Rec_2"), ("Rec", "Rec_2"))


# ---- arguments: node options and command arguments ------------------------------------------


def test_inline_arguments_split_into_node_options_and_command_arguments():
    node = plan_of('*Rec[tag="x", repeat=3, finish=true, run_cycle="root.step:2", on_error="skip"]')["Rec"]
    assert dict(node.args) == {"tag": "x"}
    assert (node.repeat, node.finish, node.run_cycle, node.on_error) == (
        3,
        True,
        Cycle("root", "step", 2),
        OnError.SKIP,
    )


def test_node_option_defaults():
    plan = plan_of("$root( *Rec, *Graph, *IterateCommand[data=$xs] )")
    assert [(plan[name].repeat, plan[name].finish, plan[name].run_cycle) for name in ("Rec", "Graph")] == [
        (1, False, None),
        (1, False, None),
    ]
    assert plan["IterateCommand"].repeat == -1  # a loader runs until its data runs out
    assert {node.on_error for node in plan.nodes.values()} == {OnError.STOP}


def test_nodes_added_while_running_default_to_on_error_remove():
    base = plan_of("*Rec")
    plan = resolve(
        [parse('$root( *Rec[tag="new"], *Rec[tag="kept", on_error="stop"] )')],
        registry=RECORDING,
        base=base,
        added_while_running=True,
    )
    assert (plan["Rec"].on_error, plan["Rec_1"].on_error, plan["Rec_2"].on_error) == (
        OnError.STOP,
        OnError.REMOVE,
        OnError.STOP,
    )


def test_variables_stay_references_until_run():
    plan = plan_of("$root( *IterateCommand[data=$xs], *Print[content=[$main.lr, 1e-3, null]] )")
    assert plan["IterateCommand"].args["data"] == Variable("xs")
    assert plan["Print"].args["content"] == [Variable("main.lr"), 0.001, None]


def test_inline_arguments_override_define_arguments(tmp_path):
    plan = plan_of('$root( STEP[tag="mine", repeat=2] )', program_file(tmp_path))
    node = plan["STEP"]
    assert (dict(node.args), node.repeat) == ({"tag": "mine"}, 2)


def test_define_inherit_is_merged(tmp_path):
    definitions = program_file(
        tmp_path,
        """
        DEFINE:
          BASE:
            command: PrintCommand
            args: {content: {loss: true, every: 10}}
            repeat: 2
          CHILD:
            inherit: BASE
            args: {content: {every: 100}}
            finish: True
          GRANDCHILD:
            inherit: CHILD
            run_cycle: root.step:5
        """,
    )
    plan = plan_of("$root( $BASE, $CHILD, $GRANDCHILD )", definitions)
    assert dict(plan["BASE"].args) == {"content": {"loss": True, "every": 10}}
    child = plan["CHILD"]
    assert (dict(child.args), child.repeat, child.finish) == ({"content": {"loss": True, "every": 100}}, 2, True)
    grandchild = plan["GRANDCHILD"]
    assert (grandchild.command, grandchild.finish, grandchild.run_cycle) == (
        "PrintCommand",
        True,
        Cycle("root", "step", 5),
    )


def test_define_yaml_strings_starting_with_dollar_are_variables(tmp_path):
    plan = plan_of("$root( $LOADER )", program_file(tmp_path))
    assert plan["LOADER"].args == {"data": Variable("xs")}
    assert plan["LOADER"].kind is Kind.LOADER


def test_define_args_from_a_file_next_to_the_command_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "step.yaml").write_text("tag: from a file\n")
    definitions = program_file(tmp_path, "DEFINE:\n  STEP:\n    command: Rec\n    args: configs/step.yaml\n")
    plan = plan_of("$root( $STEP, STEP )", definitions)
    assert plan["STEP"].args == {"tag": "from a file"}
    assert plan["STEP_1"].args == {"tag": "from a file"}


def test_command_file_defaults_compile_with_their_defines(tmp_path):
    from deepleaps.compiler import compile_file

    path = tmp_path / "commands.yaml"
    path.write_text(DEFINES + "DEFAULT: ['$root( $EPOCHS( $LOADER( $STEP ) ) )']\n")
    plan = compile_file(path, registry=RECORDING).source
    assert shape(plan) == {
        "root": ("Graph", None),
        "EPOCHS": ("Graph", "root"),
        "LOADER": ("IterateCommand", "EPOCHS"),
        "STEP": ("Rec", "LOADER"),
    }


@pytest.mark.parametrize("text", ["*SetCommand[key='k']", "SET[key='k']", "$root( $SET[key='k'] )"])
def test_required_arguments_may_be_written_inline(tmp_path, text):
    definitions = program_file(tmp_path, "DEFINE:\n  SET: {command: SetCommand}\n")
    plan = plan_of(text.replace("'", '"'), definitions)
    (node,) = (node for node in plan.nodes.values() if node.command == "SetCommand")
    assert node.args == {"key": "k"}


def test_spans_point_at_the_node_reference():
    plan = plan_of("$root(\n    *Rec -> *Graph( *Rec ) )")
    assert (plan["Rec"].span.line, plan["Rec"].span.column) == (2, 5)
    assert (plan["Rec_1"].span.line, plan["Rec_1"].span.column) == (2, 21)
