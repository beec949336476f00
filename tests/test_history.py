"""The UNDO history as a checkpoint keeps it (deepleaps/control/history.py): where it ends,
and what a resumed run does with a history it cannot read. The round trip of every history
the controller makes is an invariant of tests/test_controller_stateful.py."""

from __future__ import annotations

import logging

import pytest

import deepleaps.runtime.commands  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import REGISTRY, compile_source
from deepleaps.control import editjson, editscript
from deepleaps.control.engine import Controller
from deepleaps.control.history import Applied, history_from_data, history_to_data
from deepleaps.lang import ProgramError
from deepleaps.runtime import Interpreter

START = compile_source('$root( *PrintCommand[content="a"] as A )', registry=REGISTRY)


def changed(patch_id: int, plan, *operations) -> Applied:
    script = editscript.EditScript(list(operations))
    return Applied(patch_id, plan, editscript.apply(plan, script), frozenset(editscript.changed(plan, script)))


def test_the_history_ends_at_the_newest_reload():
    first = changed(1, START.source, editscript.SetArgument("A", "content", "b"))
    reload = Applied(2, first.after, first.after, frozenset(), reloaded=object())
    last = changed(3, first.after, editscript.SetArgument("A", "content", "c"))
    data = history_to_data([first, reload, last])
    assert [item["patch_id"] for item in data] == [3]
    (restored,) = history_from_data(data, last.after)
    assert (restored.patch_id, restored.before, restored.after) == (3, first.after, last.after)


@pytest.mark.parametrize(
    "data",
    [
        {"patch_id": 1},
        ["not a change"],
        [{"patch_id": "1", "undo": {}}],
        [{"patch_id": 1, "undo": {"schema": "other"}}],
        [{"patch_id": 1, "undo": {"schema": editjson.SCHEMA, "operations": [{"op": "remove_node", "name": "B"}]}}],
    ],
)
def test_a_malformed_history_is_refused(data):
    with pytest.raises(ProgramError):
        history_from_data(data, START.source)


def test_a_resumed_run_whose_history_cannot_be_read_starts_its_undo_there(caplog):
    saved = Controller(Interpreter(START.plan, registry=REGISTRY), START.source, registry=REGISTRY).saved()
    saved["history"] = [{"patch_id": 1, "undo": None}]
    interpreter = Interpreter(START.plan, registry=REGISTRY)
    with caplog.at_level(logging.WARNING, logger="deepleaps.control"):
        controller = Controller(interpreter, START.source, registry=REGISTRY, restored=saved)
    assert controller.history == []
    assert "the checkpoint's UNDO history cannot be restored, UNDO starts here" in caplog.text
