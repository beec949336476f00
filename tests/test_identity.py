"""Which node of an edited program is which running node: named nodes by name, anonymous
ones by class, arguments and then order, under the same parent (deepleaps/control/identity.py)."""

from __future__ import annotations

import deepleaps.runtime.commands  # noqa: F401  (registers PrintCommand)
from deepleaps.compiler import REGISTRY, resolve
from deepleaps.control import editscript
from deepleaps.control.identity import match_identities, rename, written_names
from deepleaps.lang import parse


def plan(text: str):
    return resolve([parse(text, "<test>")], {}, registry=REGISTRY)


def apply(running: str, edited: str) -> tuple[object, list[str]]:
    """What APPLY does: the edited program's nodes matched to the running ones, and the diff."""
    before = plan(running)
    program = parse(edited, "<test>")
    after = match_identities(before, resolve([program], {}, registry=REGISTRY), written_names(program))
    return after, editscript.diff(before, after).summary()


def test_a_node_inserted_before_an_anonymous_one_is_the_new_one():
    after, summary = apply(
        '$root( *PrintCommand[content="old"] )',
        '$root( *PrintCommand[content="new"], *PrintCommand[content="old"] )',
    )
    assert after.nodes["PrintCommand"].args["content"] == "old"
    assert after.nodes["PrintCommand_1"].args["content"] == "new"
    assert not any(line.startswith("~") for line in summary), summary
    assert any(line.startswith("+ PrintCommand_1") for line in summary), summary


def test_a_changed_argument_keeps_the_node_when_no_other_matches():
    _, summary = apply('$root( *PrintCommand[content="a"] )', '$root( *PrintCommand[content="b"] )')
    assert summary == ['~ PrintCommand.content = "b"']


def test_removing_the_first_of_two_keeps_the_second_ones_identity():
    after, summary = apply(
        '$root( *PrintCommand[content="a"], *PrintCommand[content="b"] )',
        '$root( *PrintCommand[content="b"] )',
    )
    assert after.nodes["PrintCommand_1"].args["content"] == "b"
    assert summary == ["- PrintCommand"]


def test_rename_follows_every_reference():
    before = plan('$root( *PrintCommand[content="a"] -> *PrintCommand[run_cycle="PrintCommand.step:2"] )')
    after = rename(before, {"PrintCommand": "P"})
    assert set(after.nodes) == {"root", "P", "PrintCommand_1"}
    assert after.nodes["root"].edges == (("P", "PrintCommand_1"),)
    assert after.nodes["PrintCommand_1"].run_cycle.node == "P"
    assert after.nodes["P"].parent == "root"


# ---- labels: a labelled node is its label, whatever moves around it ---------------------


def test_written_names_are_instance_references_and_labels():
    program = parse("$root( *PrintCommand as P -> PRINT as Q, *PrintCommand -> $P )\n$G( $H )")
    assert written_names(program) == {"root", "P", "Q", "G", "H"}


def test_a_labelled_node_keeps_its_identity_when_a_twin_is_inserted_before_it():
    # Unlabelled, the newcomer with the old arguments would take the old node's identity.
    after, summary = apply(
        '$root( *PrintCommand[content="a"] as P )',
        '$root( *PrintCommand[content="a"], *PrintCommand[content="b"] as P )',
    )
    assert after.nodes["P"].args["content"] == "b"
    assert after.nodes["PrintCommand"].args["content"] == "a"
    assert summary == ['~ P.content = "b"', "+ PrintCommand (PrintCommand) in root"], summary


def test_a_labelled_node_stays_itself_whatever_moves_around_it():
    after, summary = apply(
        '$root( *PrintCommand[content="a"] -> *PrintCommand[content="b"] as P -> *PrintCommand[content="c"] )',
        '$root( *PrintCommand[content="c"], *PrintCommand[content="x"], *PrintCommand[content="a"] as P )',
    )
    assert after.nodes["P"].args["content"] == "a"
    # c and x are paired with the unlabelled nodes by the structural rule (c by its arguments).
    assert summary == [
        "- PrintCommand -> P in root",
        "- P -> PrintCommand_1 in root",
        '~ PrintCommand.content = "x"',
        '~ P.content = "a"',
        "~ root children: PrintCommand_1, PrintCommand, P",
    ], summary


def test_a_labelled_node_moved_to_another_graph_keeps_its_name():
    # Edit scripts move a node by removing and adding it: the label keeps its name, not its state.
    after, summary = apply(
        '$root( *Graph as G( *PrintCommand[content="a"] as P ), *Graph as H )',
        '$root( *Graph as G, *Graph as H( *PrintCommand[content="a"] as P ) )',
    )
    assert after.nodes["P"].parent == "H"
    assert summary == ["- P", "+ P (PrintCommand) in H"]


def test_unlabelled_nodes_are_not_paired_with_a_labelled_one():
    # The running P keeps its state; the anonymous newcomer is new, though its class and
    # arguments would have paired it with P by the structural rule.
    after, summary = apply(
        '$root( *PrintCommand[content="a"] as P )',
        '$root( *PrintCommand[content="a"] as P, *PrintCommand[content="a"] )',
    )
    assert set(after.nodes) == {"root", "P", "PrintCommand"}
    assert summary == ["+ PrintCommand (PrintCommand) in root"], summary


def test_labelling_a_running_node_by_its_generated_name_keeps_it():
    after, summary = apply(
        '$root( *PrintCommand[content="a"], *PrintCommand[content="b"] )',
        '$root( *PrintCommand[content="new"], *PrintCommand[content="b"] as PrintCommand_1 )',
    )
    assert after.nodes["PrintCommand_1"].args["content"] == "b"
    assert summary == ['~ PrintCommand.content = "new"'], summary
