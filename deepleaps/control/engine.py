"""The patch engine: requests from the socket become changes applied at safe points (docs/design.md §6).

Requests arrive on server threads; the dry-run verbs (``STATUS``, ``DOT``,
``DIFF``) are answered there from the immutable running plan, everything
else is queued and carried out by the interpreter's own thread at its next
safe point, one request at a time: text → AST → the new program, compiled
and checked as a whole → rejected (nothing changes) or turned into an edit
script against the running program → installed → journaled → replied with
the diff and the point where it took effect.

Every applied change moves the program to a new version. A change is a
function of the running program and its own data only, so every rank of a
distributed run that applies the same journal entry at the same point ends
in the same state.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import attrs

from deepleaps.compiler import Plan, PlanNode, Registry, compile_plan
from deepleaps.compiler.check import check_plan
from deepleaps.control import editscript
from deepleaps.control.journal import Journal
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import Diagnostic, SourceText, describe, error
from deepleaps.lang.programfile import Definition
from deepleaps.runtime.interpreter import Interpreter

log = logging.getLogger("deepleaps.control")


@attrs.frozen
class Reply:
    """The answer to one request; ``to_json`` is what a HELLO client receives."""

    ok: bool
    verb: str
    message: str = ""
    version: int | None = None
    patch_id: int | None = None
    diff: tuple[str, ...] = ()
    script: dict | None = None
    point: dict | None = None
    errors: tuple[Diagnostic, ...] = ()
    data: Any = None

    def to_json(self) -> dict:
        body: dict[str, Any] = {"ok": self.ok, "verb": self.verb}
        for key in ("message", "version", "patch_id", "script", "point", "data"):
            value = getattr(self, key)
            if value not in (None, ""):
                body[key] = value
        if self.diff:
            body["diff"] = list(self.diff)
        if self.errors:
            body["errors"] = [diagnostic.to_json() for diagnostic in self.errors]
            first = self.errors[0]
            body.setdefault("message", first.message)
            if first.span is not None:
                body["line"], body["column"] = first.span.line, first.span.column
        return body


def failure(verb: str, problem: ProgramError | str) -> Reply:
    if isinstance(problem, ProgramError):
        return Reply(False, verb, problem.render(), errors=problem.diagnostics)
    return Reply(False, verb, problem)


def _answer(future: Future, reply: Reply) -> None:
    """Resolve a request's future. Every refusal, whichever way it came, is logged here,
    once, and before the reply: a client that has its answer finds it in the log."""
    if not reply.ok:
        log.warning("%s rejected: %s", reply.verb, reply.message)
    future.set_result(reply)


@attrs.define
class _Request:
    verb: str
    payload: str
    future: Future
    origin: str = "socket"


#: How many applied changes UNDO can go back through.
HISTORY = 100


@attrs.frozen
class Applied:
    """One applied plan change, kept for UNDO."""

    patch_id: int
    before: Plan
    after: Plan


class Controller:
    """Owns the running program (source plan, version, history) and the request queue."""

    def __init__(
        self,
        interpreter: Interpreter,
        source: Plan,
        *,
        registry: Registry,
        definitions: Mapping[str, Definition] | None = None,
        sources: Mapping[str, SourceText] | None = None,
        roots: Sequence[Path] = (),
        run_dir: Path | None = None,
        journal: Journal | None = None,
        workspace: Path | None = None,
        allow_external_modules: bool = False,
        replay: Sequence[Mapping[str, Any]] = (),
    ):
        self.interpreter = interpreter
        self.source = source
        self.registry = registry
        self.definitions = dict(definitions or {})
        self.sources = dict(sources or {})
        self.roots = tuple(roots)
        self.run_dir = run_dir
        self.journal = journal
        self.workspace = workspace
        self.allow_external_modules = allow_external_modules
        self.version = 1
        self.history: list[Applied] = []
        self.paused = False
        self._queue: collections.deque[_Request] = collections.deque()
        self._wake = threading.Event()
        self._replay = collections.deque(replay)
        self._next_patch_id = 1 + max((int(entry.get("id", 0)) for entry in replay), default=0)
        self._closed = False
        self._monitor_due = 0.0
        self._lock = threading.RLock()  # a signal handler may request while its own thread holds it
        interpreter.add_safe_point_hook(self.on_safe_point)
        from deepleaps.control import verbs

        self._verbs: dict[str, Callable[[Controller, str, PlanNode], Reply]] = verbs.VERBS
        self._immediate = verbs.IMMEDIATE_VERBS

    # ---- requests (any thread) ------------------------------------------------------

    def request(self, verb: str, payload: str = "", origin: str = "socket") -> Future:
        """Submit ``VERB payload``; the future resolves to a :class:`Reply`."""
        verb = verb.upper()
        future: Future = Future()
        if verb in self._immediate:
            try:
                _answer(future, self._immediate[verb](self, payload))
            except ProgramError as problem:
                _answer(future, failure(verb, problem))
            return future
        if verb not in self._verbs:
            known = ", ".join(sorted({*self._verbs, *self._immediate}))
            _answer(future, failure(verb, f"unknown verb '{verb}'; verbs are {known}"))
            return future
        with self._lock:
            if self._closed:
                _answer(future, failure(verb, "the training has ended; nothing more is applied"))
                return future
            self._queue.append(_Request(verb, payload, future, origin))
        self._wake.set()
        return future

    def close(self) -> None:
        """The run ended: answer every queued request with an error."""
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
        for request in pending:
            _answer(request.future, failure(request.verb, "the training ended before this was applied"))

    # ---- the safe point (interpreter thread) ----------------------------------------------

    def on_safe_point(self, interpreter: Interpreter, node: PlanNode) -> None:
        if self._replay:
            self._replay_due(node)
        while self._queue:
            self._serve(self._queue.popleft(), node)
        while self.paused and not self._closed:
            self._wake.wait(0.2)
            self._wake.clear()
            while self._queue:
                self._serve(self._queue.popleft(), node)
        now = time.monotonic()
        if self.run_dir is not None and now >= self._monitor_due:
            self._monitor_due = now + 1.0
            self.write_monitor()

    def _serve(self, request: _Request, node: PlanNode) -> None:
        try:
            reply = self._verbs[request.verb](self, request.payload, node)
        except ProgramError as problem:
            reply = failure(request.verb, problem)
        except Exception as problem:  # a bug or an environment failure: report, never kill the run
            log.exception("%s failed", request.verb)
            reply = failure(request.verb, describe(problem))
        _answer(request.future, reply)

    def point(self, node: PlanNode) -> dict:
        """Where a change takes effect: the safe point's node, its path and counters."""
        state = self.interpreter.states[node.name]
        return {"node": node.name, "path": self.interpreter.plan.path(node.name), "counters": state.counters()}

    # ---- changing the program ----------------------------------------------------------------

    def check(self, plan: Plan) -> None:
        """The whole-program checks the compiler runs, on a changed source plan."""
        problems: list[Diagnostic] = []

        def fail(message, span=None, hint=None):
            problems.append(error(message, span, self.sources.get(span.file) if span else None, hint=hint))

        check_plan(plan, fail, {})
        for node in plan.nodes.values():
            if self.registry.get(node.command) is None:
                fail(f"unknown command class '{node.command}' for node '{node.name}'", node.span)
        if problems:
            raise ProgramError(problems)

    def commit(self, verb: str, text: str, script: editscript.EditScript, node: PlanNode) -> Reply:
        """Install ``script`` (already computed against the running program) at this safe point."""
        if not script:
            return Reply(True, verb, "no change", version=self.version, point=self.point(node))
        before = self.source
        after = editscript.apply(before, script)
        self.check(after)
        compiled = compile_plan(after)
        self.interpreter.install(compiled.plan, rebuild=script.touched())
        self.source = after
        self.version += 1
        patch_id = self._next_patch_id
        self._next_patch_id += 1
        self.history.append(Applied(patch_id, before, after))
        del self.history[:-HISTORY]
        point = self.point(node)
        data = editscript.script_to_data(script)
        self.record(patch_id, verb, text, point, script=data)
        self.write_monitor()
        return Reply(True, verb, "applied", self.version, patch_id, tuple(script.summary()), data, point)

    def record(self, patch_id: int | None, verb: str, text: str, point: dict, script: dict | None = None) -> int:
        """A journal line for an applied change (plan patch or runtime action); its patch id."""
        if patch_id is None:
            patch_id = self._next_patch_id
            self._next_patch_id += 1
        if self.journal is None:
            return patch_id
        self.journal.write(
            {"id": patch_id, "verb": verb, "text": text, "diff": script, "point": point, "version": self.version}
        )
        return patch_id

    def unreplayed(self) -> list[Mapping[str, Any]]:
        """The journal entries being replayed whose point the run has not reached (yet)."""
        return list(self._replay)

    def _replay_due(self, node: PlanNode) -> None:
        """Re-apply journal entries whose point is this safe point."""
        state = self.interpreter.states[node.name]
        while self._replay:
            entry = self._replay[0]
            point = entry["point"]
            # All the counters: a loader's last step of an epoch and the next epoch's start share total_step.
            if point["node"] != node.name or point["counters"] != state.counters():
                return
            self._replay.popleft()
            from deepleaps.control import verbs

            reply = verbs.replay(self, entry, node)
            if not reply.ok:
                reason = describe(ProgramError(reply.errors)) if reply.errors else reply.message
                message = f"journal entry {entry['id']} ({entry['verb']}) failed on replay: {reason}"
                raise ProgramError([Diagnostic(message)])

    # ---- monitor ---------------------------------------------------------------------------

    def write_monitor(self) -> None:
        """The seed's monitor file: the running graph as a tree with counters."""
        if self.run_dir is None:
            return
        from deepleaps.compiler.views import plan_tree
        from deepleaps.train.checkpoint import atomic_write

        text = f"version {self.version}\n" + plan_tree(self.interpreter.plan, self.interpreter.states)
        try:
            atomic_write(self.run_dir / "monitor.txt", lambda file: file.write(text.encode()), durable=False)
        except OSError as problem:
            log.warning("cannot write the monitor file: %s", problem)
