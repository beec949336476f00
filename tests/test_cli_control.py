"""How ``deepleaps send`` and ``deepleaps client`` print replies: one ``error:`` per refusal."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import deepleaps.cli.control
from deepleaps.cli import main
from deepleaps.lang import Diagnostic

DIAGNOSTIC = Diagnostic("there is no node 'NOPE' to remove")
REPLIES = {
    "PING": {"ok": True, "verb": "PING", "message": "pong", "version": 3},
    "REMOVE": {"ok": False, "verb": "REMOVE", "message": DIAGNOSTIC.render(), "errors": [DIAGNOSTIC.to_json()]},
    "UNDO": {"ok": False, "verb": "UNDO", "message": "nothing to undo"},
}


class FakeClient:
    """Answers every verb from ``REPLIES``, as a training would."""

    def __init__(self, *args, **kwargs):
        pass

    def connect(self):
        return self

    def send(self, verb, payload=""):
        return REPLIES[verb]

    def close(self):
        pass


@pytest.fixture(autouse=True)
def fake_client(monkeypatch):
    monkeypatch.setattr(deepleaps.cli.control, "Client", FakeClient)


@pytest.mark.parametrize(
    ("verb", "status", "stdout", "stderr"),
    [
        ("PING", 0, "pong\n", ""),
        ("REMOVE", 1, "", "error: there is no node 'NOPE' to remove\n"),
        ("UNDO", 1, "", "error: nothing to undo\n"),
    ],
)
def test_send_prints_a_refusal_with_one_error_prefix(verb, status, stdout, stderr):
    result = CliRunner().invoke(main, ["send", verb])
    assert (result.exit_code, result.stdout, result.stderr) == (status, stdout, stderr)


def test_send_json_prints_the_reply_as_it_is():
    result = CliRunner().invoke(main, ["send", "--json", "UNDO"])
    assert result.exit_code == 1
    assert '"message": "nothing to undo"' in result.stdout


def test_the_interactive_client_marks_refusals_the_same_way():
    result = CliRunner().invoke(main, ["client"], input="PING\nREMOVE NOPE\nUNDO\n")
    assert result.exit_code == 0
    assert result.stdout == ":pong\n:error: there is no node 'NOPE' to remove\n:error: nothing to undo\n:"
