"""The controller's commit protocol over a real interpreter, stepped safe point by safe point
(docs/design.md §6).

:class:`Run` runs ``$root( $G( $A -> $B ) )`` (``G`` repeats forever) in a
thread that parks at every safe point of ``G``, after the controller's hook:
a request queued meanwhile is served at the next one. :func:`replayed` runs
the start program again with the journal to replay, up to the same point.
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

import deepleaps.runtime.commands  # noqa: F401  (registers Graph)
from deepleaps.compiler import REGISTRY, Kind, PlanNode, compile_source
from deepleaps.control import editscript
from deepleaps.control.engine import Controller, Reply
from deepleaps.control.journal import Journal, read_journal
from deepleaps.lang.programfile import load_program_file
from deepleaps.runtime import Command, Context, Interpreter

COMMANDS = REGISTRY.child()


@COMMANDS.register
class Note(Command):
    """Records its node and its (resolved) arguments."""

    name = "Note"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        text: str = ""
        count: int = 0

    def run(self, ctx: Context) -> None:
        ctx.variables["trace"].append((self.node.name, self.args.text, self.args.count))


@COMMANDS.register
class Flaky(Command):
    """Records that it ran; each instance raises on its first run."""

    name = "Flaky"
    kind = Kind.LEAF
    ran = False

    def run(self, ctx: Context) -> None:
        ctx.variables["trace"].append((self.node.name, "flaky"))
        first, self.ran = not self.ran, True
        if first:
            raise ValueError("first run")


DEFINITIONS = load_program_file(
    "machine.yaml",
    """
DEFINE:
  A: {command: Note, args: {text: a}}
  B: {command: Note, args: {count: 2}}
  C: {command: Note, args: {text: c, count: 3}}
  G: {command: Graph, repeat: -1}
""",
)
START = compile_source("$root( $G( $A -> $B ) )", registry=COMMANDS, definitions=DEFINITIONS)
#: How long any wait for the interpreter's thread lasts before the test fails.
WAIT = 30.0


class FaultyJournal(Journal):
    """A journal whose writes fail with ``ENOSPC`` while it is broken."""

    broken = False

    def write(self, entry: dict[str, Any]) -> None:
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(entry)


def start_controller(trace: list, journal: Journal | None, replay: Sequence[dict] = ()) -> Controller:
    interpreter = Interpreter(START.plan, registry=COMMANDS, variables={"trace": trace})
    return Controller(
        interpreter,
        START.source,
        registry=COMMANDS,
        definitions=DEFINITIONS.definitions,
        sources=DEFINITIONS.sources,
        journal=journal,
        replay=replay,
    )


class Stepper:
    """Runs an interpreter in a thread that parks at every safe point of ``G``, after the
    controller's hook, until :meth:`advance` lets one step run."""

    def __init__(self, interpreter: Interpreter):
        self.interpreter = interpreter
        self.points = 0  # safe points of G reached
        self.error: BaseException | None = None
        self._arrived = threading.Semaphore(0)
        self._go = threading.Semaphore(0)
        self._stopping = False
        interpreter.add_safe_point_hook(self._park)
        self._thread = threading.Thread(target=self._run, name="interpreter", daemon=True)
        self._thread.start()
        self._wait()

    def _park(self, interpreter: Interpreter, node: PlanNode) -> None:
        if node.name != "G" or self._stopping:
            return
        self.points += 1
        self._arrived.release()
        if not self._go.acquire(timeout=WAIT):
            interpreter.request_stop()

    def _run(self) -> None:
        try:
            self.interpreter.run()
        except BaseException as problem:  # the test thread reports it
            self.error = problem
        finally:
            self._arrived.release()

    def _wait(self) -> None:
        assert self._arrived.acquire(timeout=WAIT), "the interpreter did not reach the next safe point"
        assert self.error is None, f"the run failed: {self.error!r}"
        assert self._thread.is_alive(), "the run ended"

    def advance(self) -> None:
        """Run one step of G, up to its next safe point (where the controller serves requests)."""
        self._go.release()
        self._wait()

    def stop(self) -> None:
        self._stopping = True
        self.interpreter.request_stop()
        self._go.release()
        self._thread.join(WAIT)


def replayed(entries: Sequence[dict], points: int) -> tuple[Controller, list]:
    """A fresh run of the start program replaying ``entries``, stopped at G's safe point number
    ``points``: its controller and the trace of every step it ran."""
    trace: list = []
    controller = start_controller(trace, None, replay=entries)
    reached = 0

    def stop_there(interpreter: Interpreter, node: PlanNode) -> None:
        nonlocal reached
        if node.name == "G":
            reached += 1
            if reached == points:
                interpreter.request_stop()

    controller.interpreter.add_safe_point_hook(stop_there)
    controller.interpreter.run()
    assert reached == points
    return controller, trace


class Run:
    """The start program running under a controller with a journal that can be broken,
    stepped safe point by safe point."""

    def __init__(self, directory: Path):
        self.journal = FaultyJournal(directory / "journal.jsonl")
        self.trace: list = []
        self.controller = start_controller(self.trace, self.journal)
        self.interpreter = self.controller.interpreter
        self.stepper = Stepper(self.interpreter)

    def send(self, verb: str, payload: str = "") -> Reply:
        """The reply to a request served at the next safe point of G."""
        future = self.controller.request(verb, payload)
        self.stepper.advance()
        return future.result(timeout=0)

    def entries(self) -> list[dict[str, Any]]:
        return read_journal(self.journal.path)

    def replayed(self) -> tuple[Controller, list]:
        """A replay of the journal, run to the same safe point (see :func:`replayed`)."""
        return replayed(self.entries(), self.stepper.points)


def script_payload(script: editscript.EditScript) -> str:
    return json.dumps(editscript.script_to_data(script))


# ---- cases -----------------------------------------------------------------


@pytest.fixture
def run(tmp_path):
    started = Run(tmp_path)
    yield started
    started.stepper.stop()


def assert_replay_matches(run: Run) -> Controller:
    replay, trace = run.replayed()
    assert replay.unreplayed() == []
    assert trace == run.trace
    assert (replay.version, replay.source) == (run.controller.version, run.controller.source)
    assert [applied.before for applied in replay.history] == [applied.before for applied in run.controller.history]
    return replay


def test_undo_of_a_runtime_removal_brings_the_node_back_in_a_replay_too(run):
    assert run.send("ADD", "$G( *Flaky )").ok
    # Flaky fails in the next step: the runtime removes it at the safe point, then UNDO brings it back.
    undo = run.send("UNDO")
    assert undo.ok and "Flaky" in run.controller.source, undo
    assert [(entry["verb"], entry["origin"]) for entry in run.entries()] == [
        ("ADD", "socket"),
        ("REMOVE", "runtime"),
        ("UNDO", "socket"),
    ]
    assert_replay_matches(run)


def test_a_failed_nodes_removal_waits_for_the_journal_and_is_replayed_where_it_was_made(run):
    assert run.send("ADD", "$G( *Flaky )").ok
    run.journal.broken = True
    run.send("PING")  # Flaky fails; its removal cannot be journaled
    run.send("PING")
    assert "Flaky" in run.controller.source and run.controller.version == 2
    assert run.interpreter.states["Flaky"].finished, "a failed node runs no more"
    run.journal.broken = False
    run.send("PING")
    assert "Flaky" not in run.controller.source and run.controller.version == 3
    removal = run.entries()[-1]
    assert (removal["verb"], removal["text"], removal["origin"]) == ("REMOVE", "Flaky", "runtime")
    assert removal["point"]["counters"]["step"] == run.stepper.points - 1
    assert [event["node"] for event in run.controller.removed] == ["Flaky"]
    assert_replay_matches(run)


def test_a_patch_that_changes_nothing_is_no_change(run):
    unchanged = editscript.EditScript([editscript.SetArgument("A", "text", "a")], base_version=1)
    reply = run.send("PATCH", script_payload(unchanged))
    assert reply.ok and reply.message == "no change", reply
    assert (reply.version, reply.patch_id, run.controller.version) == (1, None, 1)
    assert run.controller.history == [] and run.entries() == []


def test_a_replayed_undo_leaves_the_undo_history_as_the_run_left_it(run):
    assert run.send("SET", 'A.text "x"').ok
    assert run.send("SET", "B.count 5").ok
    assert run.send("UNDO").ok
    replay = assert_replay_matches(run)
    assert len(replay.history) == 1
