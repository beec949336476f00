"""Which node of an edited program is which running node: named nodes by name, anonymous
ones by class, arguments and then order, under the same parent (deepleaps/control/identity.py)."""

from __future__ import annotations

import deepleaps.runtime.commands  # noqa: F401  (registers PrintCommand)
from deepleaps.compiler import REGISTRY, resolve
from deepleaps.control import editscript
from deepleaps.control.identity import match_identities, rename
from deepleaps.lang import parse


def plan(text: str):
    return resolve([parse(text, "<test>")], {}, registry=REGISTRY)


def apply(running: str, edited: str) -> tuple[object, list[str]]:
    before = plan(running)
    after = match_identities(before, plan(edited), {"root"})
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
