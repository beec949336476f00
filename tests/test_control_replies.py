"""Replies stay bounded and say nothing of the code whatever a request holds (docs/control.md#replies):
at most 20 diagnostics, a refusal within 64 KiB of JSON, refusals in run.log at most ten a second,
and an unexpected exception answered with an id that run.log holds with its traceback. In the test's
process (:class:`InProcess`, a :class:`ControlServer` on a free port); tests/test_control_hostile.py
sends the same to a real training."""

from __future__ import annotations

import json
import logging
import re

import pytest
from control_fixtures import InProcess

from deepleaps.control import verbs
from deepleaps.control.client import Client
from deepleaps.control.replies import (
    LOGGED_PER_SECOND,
    MAX_DIAGNOSTICS,
    MAX_REPLY,
    MAX_TEXT,
    RefusalLog,
    Reply,
    failure,
)
from deepleaps.control.server import ControlServer, ServerSettings
from deepleaps.lang import Diagnostic, ProgramError

ADAM = {"name": "Adam", "lr": 0.01}
INTERNAL = re.compile(r"^internal error ([0-9a-f]{8})$")


def test_a_refusal_holds_the_first_twenty_diagnostics_and_a_note_of_the_rest():
    problem = ProgramError([Diagnostic(f"mistake {number}") for number in range(1, 1001)])
    body = failure("ADD", problem).to_json()
    assert len(body["errors"]) == MAX_DIAGNOSTICS + 1
    assert [error["message"] for error in body["errors"][:2]] == ["mistake 1", "mistake 2"]
    note = body["errors"][-1]
    assert (note["severity"], note["message"]) == ("note", "and 980 more not shown (a reply holds 20)")
    assert body["message"].splitlines()[-1] == "note: and 980 more not shown (a reply holds 20)"
    assert body["message"].count("error: mistake") == MAX_DIAGNOSTICS


@pytest.mark.parametrize("character", ["x", "é", "\U0001f600"], ids=["ascii", "latin", "astral"])
def test_a_refusal_of_any_texts_fits_in_64_kib_of_json_and_says_what_was_cut(character):
    problem = ProgramError([Diagnostic(f"unknown name '{character * 200_000}'") for _ in range(30)])
    body = failure(character * 100_000, problem).to_json()
    assert len(json.dumps(body)) <= MAX_REPLY
    assert len(body["errors"]) == MAX_DIAGNOSTICS + 1
    assert body["errors"][0]["message"].startswith("unknown name '" + character)
    assert re.search(r"… \[\d+ more characters cut\]$", body["errors"][0]["message"])
    assert re.search(r"… \[\d+ more characters cut\]$", body["message"])


def test_a_plain_refusal_is_cut_too_but_what_a_change_returns_is_whole():
    assert len(failure("LOAD", "x" * 1_000_000).message) < MAX_TEXT + 100
    whole = Reply(True, "DOT", "d" * 200_000, data="d" * 200_000).to_json()
    assert len(whole["message"]) == len(whole["data"]) == 200_000


def test_refusals_flooding_in_are_logged_ten_a_second_then_counted(caplog):
    refusals = RefusalLog()
    with caplog.at_level(logging.WARNING, logger="deepleaps.control"):
        for number in range(100):
            refusals.warning("FLOOD %d rejected", number)
        refusals.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [f"FLOOD {number} rejected" for number in range(LOGGED_PER_SECOND)] + [
        f"{100 - LOGGED_PER_SECOND} more rejections not logged"
    ]


def test_each_refusal_is_logged_once_and_cut_in_the_log(tmp_path, caplog):
    run = InProcess(tmp_path, ADAM)
    names = ", ".join(f"*{letter * 3000}" for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with caplog.at_level(logging.WARNING, logger="deepleaps.control"):
        reply = run.send("ADD", f"$root( {names} )")
    assert len(reply["errors"]) == MAX_DIAGNOSTICS + 1
    (record,) = caplog.records
    logged = record.getMessage()
    assert logged.startswith("ADD rejected: <ADD>:1:8: error: unknown command class '*AAA")
    assert logged.endswith("more characters cut]") and len(logged) < MAX_TEXT + 100


def boom(*args):
    raise KeyError("IterateCommand")


@pytest.mark.parametrize(("verb", "table"), [("EXPORT", verbs.VERBS), ("STATUS", verbs.IMMEDIATE_VERBS)])
def test_an_unexpected_exception_is_answered_with_an_id_that_run_log_holds_with_the_traceback(
    tmp_path, caplog, monkeypatch, verb, table
):
    run = InProcess(tmp_path, ADAM)
    monkeypatch.setitem(table, verb, boom)
    with caplog.at_level(logging.WARNING, logger="deepleaps.control"):
        reply = run.send(verb, "note 1")
    assert not reply["ok"] and "errors" not in reply
    incident = INTERNAL.match(reply["message"])
    assert incident, reply
    assert "KeyError" not in json.dumps(reply) and "IterateCommand" not in json.dumps(reply)
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert logged.getMessage() == f"internal error {incident.group(1)} while serving {verb} note 1"
    assert logged.exc_info[0] is KeyError
    assert run.journaled() == []
    monkeypatch.undo()
    assert run.send("PING")["ok"] and run.send("EXPORT", "note 2")["ok"]


def test_a_reply_the_server_cannot_send_is_answered_with_an_id(tmp_path, caplog, monkeypatch):
    run = InProcess(tmp_path, ADAM)
    monkeypatch.setitem(verbs.IMMEDIATE_VERBS, "DOT", lambda controller, payload: Reply(True, "DOT", data=object()))
    settings = ServerSettings(ipc_port=0, token_file=str(tmp_path / "control.token"))
    server = ControlServer(run.controller, settings, tmp_path).start()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="deepleaps.control"),
            Client(server.host, server.port, server.token, timeout=10) as client,
        ):
            reply = client.send("DOT")
        incident = INTERNAL.match(reply["message"])
        assert reply["ok"] is False and incident, reply
        assert any(incident.group(1) in record.getMessage() and record.exc_info for record in caplog.records)
        with Client(server.host, server.port, server.token, timeout=10) as client:
            assert client.send("PING")["ok"]
    finally:
        server.close()


@pytest.mark.parametrize(
    ("verb", "payload", "message"),
    [
        (
            "LOAD",
            "resource/configs/a\0.yaml",
            "LOAD takes the path of a command file, not 'resource/configs/a\\x00.yaml'",
        ),
        (
            "IMPORT_MODULE",
            "src.ipc\0x",
            "IMPORT_MODULE takes a module name such as src.ipc.CustomCommand, not 'src.ipc\\x00x'",
        ),
        ("RELOAD_MODULE", "src/ipc", "RELOAD_MODULE takes a module name"),
        ("ADD_COMMAND_MODULE", "", "ADD_COMMAND_MODULE takes a module name"),
        ("PATCH", "[" * 100_000, "PATCH: the JSON nests too deeply to be an edit script"),
        ("ADD", "(" * 100_000, "expected a node"),
        ("ADD", "$root( *PrintCommand[content=" + "[" * 100_000 + "] )", "nesting deeper than 64 levels"),
        ("DIFF", "{" * 100_000, "<DIFF>:1:1: error"),
    ],
)
def test_hostile_payloads_get_diagnostics(tmp_path, verb, payload, message):
    run = InProcess(tmp_path, ADAM)
    reply = run.send(verb, payload)
    assert not reply["ok"] and message in reply["message"], reply
    assert reply["errors"] and not re.search(r"[A-Z]\w*Error\b", reply["message"])
    assert len(json.dumps(reply)) <= MAX_REPLY
