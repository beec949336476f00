"""The patch engine: requests from the socket become changes applied at safe points (docs/design.md §6).

Requests arrive on server threads; the dry-run verbs (``STATUS``, ``DOT``,
``DIFF``) are answered there from the immutable running plan. A change of
the program is prepared there too, against a snapshot of the running
program: text → AST → edit script → the new program, checked and compiled
as a whole (a refusal is answered at once if nothing was about to change
the program). Everything is then queued and carried out by the
interpreter's own thread at its next safe point, one request at a time:
build the new command instances → journal → install → reply with the diff
and the point where it took effect; a prepared change whose version the
program has left is prepared again there.

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

from deepleaps.compiler import Plan, PlanNode, Registry
from deepleaps.control import editjson, editscript
from deepleaps.control.history import HISTORY, Applied, forgetting, history_from_data, history_to_data
from deepleaps.control.journal import Journal
from deepleaps.control.monitor import FILE as MONITOR
from deepleaps.control.monitor import Monitor
from deepleaps.control.pacing import Pacing
from deepleaps.control.preparation import Prepared, Snapshot, prepare
from deepleaps.control.replies import MAX_TEXT, RefusalLog, Reply, cut, failure, internal_error, stale
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import Diagnostic, SourceText, describe
from deepleaps.lang.programfile import Definition
from deepleaps.runtime.interpreter import Interpreter
from deepleaps.workspace.confine import Confinement

log = logging.getLogger("deepleaps.control")


class _Refused(Exception):
    """A request refused while it was prepared, with its reply."""

    def __init__(self, reply: Reply):
        super().__init__(reply.message)
        self.reply = reply


class JournalError(ProgramError):
    """The journal entry of a change could not be written: the change is not made."""


def _when_durable(reply: Reply, done: Future) -> Reply:
    """``reply``, once its journal entry is on disk (or could not be made so: it is in effect)."""
    problem = done.exception()
    if problem is None:
        return reply
    log.error("journal entry %s could not be made durable: %s", reply.patch_id, describe(problem))
    return attrs.evolve(reply, message=f"{reply.message} (the journal could not be synced: {describe(problem)})")


@attrs.define
class _Request:
    verb: str
    payload: str
    future: Future
    origin: str = "socket"
    #: ``VERB@N``: the version the request was made against; refused if the program moved.
    base: int | None = None
    #: A change of the program prepared on the requesting thread; committed as it is if the
    #: program is still at its version at the safe point, else prepared again there.
    prepared: Prepared | None = None


#: What is always served, whatever the limits: the owner can always stop the run and look at
#: it. These are not paced, and a client over ``max_clients`` may still send them.
ALWAYS_SERVED = ("STOP", "STATUS", "PING")


def _restored_history(restored: Mapping[str, Any] | None, source: Plan) -> list[Applied]:
    """The UNDO history a checkpoint kept (none in one written before it kept it), whose
    newest change made ``source``, the program restored from it (with any ``--set``)."""
    if not restored or "history" not in restored:
        return []
    try:
        return history_from_data(restored["history"], source)
    except ProgramError as problem:
        log.warning("the checkpoint's UNDO history cannot be restored, UNDO starts here: %s", describe(problem))
        return []


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
        confinement: Confinement | None = None,
        replay: Sequence[Mapping[str, Any]] = (),
        restored: Mapping[str, Any] | None = None,
        journaled_ids: Sequence[int] = (),
        pacing: Pacing | None = None,
    ):
        """``restored`` is what :meth:`saved` kept in the checkpoint a run resumes from
        (``source`` is then its program); ``journaled_ids`` the ids its journal holds;
        ``pacing`` the share of the training's time requests may take (unpaced if None)."""
        self.interpreter = interpreter
        self.source = source
        #: The compiled plan of ``source``: the one the interpreter runs.
        self.compiled = interpreter.plan
        self.registry = registry
        self.definitions = dict(definitions or {})
        self.sources = dict(sources or {})
        self.roots = tuple(roots)
        self.run_dir = run_dir
        self.journal = journal
        self.workspace = workspace
        #: What the program's classes, files and modules may reach (docs/security.md).
        self.confinement = confinement or Confinement(workspace or Path.cwd())
        self.version = int(restored["version"]) if restored else 1
        self.history: list[Applied] = _restored_history(restored, source)
        #: The text of each module version a reload loaded, by module name: checkpoints keep
        #: it, and a resumed run loads it (see deepleaps.control.reload).
        self.code: dict[str, Any] = dict((restored or {}).get("code", {}))
        self.paused = False
        self._queue: collections.deque[_Request] = collections.deque()
        #: Requests queued or being served: a refusal prepared meanwhile may not be final.
        self._pending = 0
        self._wake = threading.Event()
        self._replay = collections.deque(replay)
        # Ids go on after every id this run has journaled or replays (a resumed run's journal
        # may hold entries after its checkpoint, lost with the process).
        ids = [int(entry.get("id", 0)) for entry in replay] + [int(i) for i in journaled_ids]
        self._next_patch_id = max(1 + max(ids, default=0), int(restored["next_patch_id"]) if restored else 1)
        self._closed = False
        #: Who asked for the change being made: socket, signal, runtime, replay …
        self._origin = "socket"
        #: The journal's promise that the entry of the request being served is on disk.
        self._durable: Future | None = None
        #: Nodes with ``on_error: remove`` that failed, to remove at the next safe point, with why
        #: they failed and whether a removal was tried already.
        self._runtime: collections.deque[tuple[str, str, bool]] = collections.deque()
        #: The nodes the runtime removed (STATUS shows them), and which patch added each node.
        self.removed: collections.deque[dict[str, Any]] = collections.deque(
            (restored or {}).get("removed", []), maxlen=HISTORY
        )
        self.added_by: dict[str, int] = {key: int(value) for key, value in (restored or {}).get("added_by", {}).items()}
        interpreter.on_remove = self._node_failed
        interpreter.checkpoint_parts["control"] = self.saved
        #: The monitor file, with ``--no-server`` too (None without a run directory).
        self.monitor = Monitor(run_dir / MONITOR, interpreter) if run_dir is not None else None
        self._tick_due = 0.0
        self.refusals = RefusalLog()
        self.pacing = pacing or Pacing(1.0)
        self._lock = threading.RLock()  # a signal handler may request while its own thread holds it
        interpreter.add_safe_point_hook(self.on_safe_point)
        from deepleaps.control import verbs

        self._verbs: dict[str, Callable[[Controller, str, PlanNode], Reply]] = verbs.VERBS
        self._scripts = verbs.script_of
        self._immediate = verbs.IMMEDIATE_VERBS

    # ---- requests (any thread) ------------------------------------------------------

    def request(self, verb: str, payload: str = "", origin: str = "socket") -> Future:
        """Submit ``VERB payload`` (or ``VERB@N payload``: only if the program is still at
        version N); the future resolves to a :class:`Reply`.

        Paced (:attr:`pacing`): the calling thread may wait before the request's work
        begins, and the work is charged; :data:`ALWAYS_SERVED` verbs are neither.
        """
        if verb.upper().partition("@")[0] in ALWAYS_SERVED:
            return self._submit(verb, payload, origin)
        self.pacing.wait()
        with self.pacing.charging():
            return self._submit(verb, payload, origin)

    def _submit(self, verb: str, payload: str, origin: str) -> Future:
        verb, at, base_text = verb.upper().partition("@")
        future: Future = Future()
        base = int(base_text) if base_text.isdigit() else None
        if at and (base is None or verb in self._immediate):
            why = "a version: VERB@N" if base is None else f"no version: {verb} changes nothing"
            self._answer(future, failure(verb, f"'{verb}@{base_text}' is not a verb: {verb}@ takes {why}"))
            return future
        if verb in self._immediate:
            run = self._immediate[verb]
            self._answer(future, self._carry_out(verb, payload, lambda: run(self, payload)))
            return future
        if verb not in self._verbs:
            known = ", ".join(sorted({*self._verbs, *self._immediate}))
            self._answer(future, failure(cut(verb, 40), f"unknown verb '{cut(verb, 40)}'; verbs are {known}"))
            return future
        request = _Request(verb, payload, future, origin, base)
        try:
            request.prepared = self._prepare(request)
        except _Refused as refused:
            self._answer(future, refused.reply)
            return future
        with self._lock:
            if self._closed:
                self._answer(future, failure(verb, "the training has ended; nothing more is applied"))
                return future
            self._queue.append(request)
            self._pending += 1
        self._wake.set()
        return future

    def snapshot(self) -> Snapshot:
        """The running program now (any thread)."""
        with self._lock:
            return Snapshot(
                self.source,
                self.compiled,
                self.version,
                self.registry,
                dict(self.definitions),
                dict(self.sources),
                self.roots,
                self.confinement,
            )

    def _prepare(self, request: _Request) -> Prepared | None:
        """Parse, resolve, check and compile a change of the program on the requesting
        thread, so that the training thread only installs it (docs/control.md, "The commit
        protocol"). ``None`` for a request that is not such a change, or whose preparation
        failed while the program was moving: the safe point carries it out as it finds it.

        Raises:
            _Refused: the request is refused against a program that nothing was about to
                change: the safe point would refuse it the same way.
        """
        script_of = self._scripts(request.verb, request.payload)
        if script_of is None:
            return None
        program = self.snapshot()
        at = (program.version, program.registry.generation)
        prepared: Prepared | None = None

        def attempt() -> Reply:
            nonlocal prepared
            prepared = prepare(program, script_of(program, request.payload))
            return Reply(True, request.verb)

        reply = self._carry_out(request.verb, request.payload, attempt)
        if reply.ok:
            return prepared
        with self._lock:  # refused: final only if no change was queued or made meanwhile
            settled = not (self._pending or self._runtime or self._replay)
            unmoved = (self.version, self.registry.generation) == at
            if settled and unmoved and request.base in (None, self.version):
                raise _Refused(reply)
        return None

    def close(self) -> None:
        """The run ended: answer every queued request with an error."""
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
        for request in pending:
            self._answer(request.future, failure(request.verb, "the training ended before this was applied"))
        self.refusals.flush()
        if self.journal is not None:
            self.journal.close()

    def _answer(self, future: Future, reply: Reply) -> None:
        """Resolve a request's future. Every refusal, whichever way it came, is logged here,
        once (unless refusals flood in, see :class:`RefusalLog`), and before the reply: a
        client that has its answer finds it in the log."""
        if not reply.ok:
            self.refusals.warning("%s rejected: %s", reply.verb, cut(reply.message, MAX_TEXT))
        future.set_result(reply)

    @staticmethod
    def _carry_out(verb: str, payload: str, run: Callable[[], Reply]) -> Reply:
        """The reply to a request: a user's mistake (:class:`ProgramError`) is answered with
        its diagnostics; any other exception is a bug or a failing environment, answered with
        an id that run.log holds with the traceback. The training goes on either way."""
        try:
            return run()
        except ProgramError as problem:
            return failure(verb, problem)
        except Exception:
            return failure(verb, internal_error(f"{verb} {cut(payload, 200)}"))

    # ---- the safe point (interpreter thread) ----------------------------------------------

    def on_safe_point(self, interpreter: Interpreter, node: PlanNode) -> None:
        self.serve(node)
        while self.holding:
            self.serve_paused(node, 0.2)
        self.tick()

    @property
    def due(self) -> bool:
        """Whether this safe point has something to carry out (:meth:`serve`)."""
        return bool(self._queue or self._replay or self._runtime)

    @property
    def holding(self) -> bool:
        """Paused, and the run goes on: the safe point waits."""
        return self.paused and not self._closed

    def serve(self, node: PlanNode) -> None:
        """Carry out, at this safe point, what is due: journal entries being replayed, the
        removal of failed nodes, the queued requests."""
        if self._replay:
            self._replay_due(node)
        if self._runtime and not self._replay:  # while replaying, the journal says when they were removed
            self._remove_failed(node)
        while self._queue:
            self._serve(self._queue.popleft(), node)

    def serve_paused(self, node: PlanNode, wait: float) -> None:
        """While paused: wait up to ``wait`` seconds for a request, then carry out what came."""
        self._wake.wait(wait)
        self._wake.clear()
        if self._replay:  # a RESUME journaled at the point of its PAUSE
            self._replay_due(node)
        while self._queue:
            self._serve(self._queue.popleft(), node)

    def tick(self) -> None:
        """Once a second: the count of refusals left out of the log, and the monitor file."""
        now = time.monotonic()
        if now >= self._tick_due:
            self._tick_due = now + 1.0
            self.refusals.flush()
            if self.monitor is not None and self.monitor.due():
                self.monitor.write(self.version)

    def _serve(self, request: _Request, node: PlanNode) -> None:
        """Carry out one queued request; its work is charged to the pacing."""
        with self.pacing.charging():
            self._carry_out_request(request, node)

    def _carry_out_request(self, request: _Request, node: PlanNode) -> None:
        self._origin = request.origin
        self._durable = None
        run = self._verbs[request.verb]

        def carry_out() -> Reply:
            if request.base is not None and request.base != self.version:
                raise ProgramError([Diagnostic(stale(request.base, self.version))])
            prepared = request.prepared
            if prepared is not None and self._current(prepared):
                return self.commit(request.verb, request.payload, prepared.script, node, prepared=prepared)
            return run(self, request.payload, node)

        try:
            reply = self._carry_out(request.verb, request.payload, carry_out)
        finally:
            self._origin = "socket"
            with self._lock:
                self._pending -= 1
        durable, self._durable = self._durable, None
        if durable is None or not reply.ok:
            self._answer(request.future, reply)
            return
        # The reply waits for its journal entry to be on disk; the training does not.
        durable.add_done_callback(lambda done: self._answer(request.future, _when_durable(reply, done)))

    def point(self, node: PlanNode) -> dict:
        """Where a change takes effect: the safe point's node, its path and counters."""
        state = self.interpreter.states[node.name]
        return {"node": node.name, "path": self.interpreter.plan.path(node.name), "counters": state.counters()}

    # ---- changing the program ----------------------------------------------------------------

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps of the running program, so that resume goes on with it.

        Waits for the journal: a checkpoint is never on disk ahead of the entries its state includes.
        """
        if self.journal is not None:
            self.journal.sync()
        return {
            "program": editjson.program_to_data(self.source),
            "version": self.version,
            "next_patch_id": self._next_patch_id,
            "added_by": dict(self.added_by),
            "removed": list(self.removed),
            "history": history_to_data(self.history),
            "code": dict(self.code),
        }

    def commit(
        self,
        verb: str,
        text: str,
        script: editscript.EditScript,
        node: PlanNode,
        *,
        undoes: bool = False,
        forgets: str | None = None,
        record: Mapping[str, Any] | None = None,
        prepared: Prepared | None = None,
    ) -> Reply:
        """Apply ``script`` (computed against the running program) at this safe point.

        The commit protocol (docs/design.md §6): everything that can fail is
        prepared first (the new program, its checks and compilation, the new
        command instances, the journal entry), the entry is written, and only
        then is the change installed. A failure before the install changes
        nothing; a script that changes nothing (empty, or setting what is
        set already) is no change: no new version, nothing journaled.
        ``undoes``: the change restores the program before the last one in the
        UNDO history, which it takes out. ``forgets``: the change removes that
        failed node, which leaves the UNDO history too, so no UNDO brings it back.
        ``record``: more fields of the journal entry.
        """
        if prepared is None or not self._current(prepared):
            prepared = prepare(self, script)
        before, after, compiled = self.source, prepared.after, prepared.compiled
        if after is None or compiled is None:
            return Reply(True, verb, "no change", version=self.version, point=self.point(node))
        plan = compiled.plan
        built = self.interpreter.build(plan, rebuild=script.touched(), changed=compiled.changed)
        point = self.point(node)
        data = editjson.script_to_data(script)
        patch_id = self._journal(verb, text, point, self.version + 1, diff=data, **dict(record or {}))
        self.interpreter.install_built(plan, built, changed=compiled.changed)
        with self._lock:  # a snapshot taken now sees all three or none
            self.source, self.compiled = after, plan
            self.version += 1
        # A failed node waits for its removal only while it is in the program: a change that
        # took it out (a replayed removal among them) settles it, and a node of that name
        # added again later has not failed.
        self._runtime = collections.deque(failed for failed in self._runtime if failed[0] in after)
        if undoes and self.history and self.history[-1].before == after:
            self.history.pop()
        elif forgets is not None:
            self.history = forgetting(self.history, forgets)
        else:  # a replayed UNDO whose change is not in this run's history is a change of its own
            self.remember(Applied(patch_id, before, after, frozenset(editscript.changed(before, script))))
        for operation in script.operations:
            if isinstance(operation, editscript.AddNode):
                self.added_by[operation.name] = patch_id
        return Reply(True, verb, "applied", self.version, patch_id, tuple(script.summary()), data, point)

    def _current(self, prepared: Prepared) -> bool:
        """Whether ``prepared`` was made against the program and command classes as they are."""
        return (prepared.version, prepared.generation) == (self.version, self.registry.generation)

    def remember(self, applied: Applied) -> None:
        """Keep an applied change for UNDO (the last :data:`HISTORY` of them)."""
        self.history.append(applied)
        del self.history[:-HISTORY]

    def act(
        self,
        verb: str,
        text: str,
        node: PlanNode,
        effect: Callable[[], str],
        data: Any = None,
        record: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A change other than a program patch (a setting, a variable, a stop …): journaled,
        then done. Whatever can fail is checked before; ``effect`` does it and says what it did.
        ``record``: more fields of the journal entry (what a replay needs besides the text)."""
        point = self.point(node)
        patch_id = self._journal(verb, text, point, self.version, **dict(record or {}))
        return Reply(True, verb, effect(), self.version, patch_id, point=point, data=data)

    def _journal(self, verb: str, text: str, point: dict, version: int, **extra: Any) -> int:
        """Write the journal entry of a change about to be made; its patch id.

        Raises:
            JournalError: the entry could not be written, so the change must not be made.
        """
        patch_id = self._next_patch_id
        entry = {"id": patch_id, "verb": verb, "text": text, "origin": self._origin, "point": point}
        entry.update(version=version, diff=extra.pop("diff", None), **extra)
        if self.journal is not None:
            try:
                self._durable = self.journal.write(entry)
            except OSError as problem:
                message = f"the journal cannot be written ({describe(problem)}); nothing changed"
                raise JournalError([Diagnostic(message)]) from None
        self._next_patch_id += 1
        return patch_id

    # ---- changes the runtime makes --------------------------------------------------------

    def _node_failed(self, node: PlanNode, error: Exception) -> None:
        """A node with ``on_error: remove`` failed (interpreter thread): it is removed at the
        next safe point, through the commit protocol, and the removal is kept for STATUS."""
        self._runtime.append((node.name, describe(error), False))

    def _remove_failed(self, node: PlanNode) -> None:
        """Remove the failed nodes, in the order they failed. A removal the journal cannot
        record is tried again at the next safe point, and the ones after it wait: the journal
        gets every removal, in order, once it can be written (a replay makes them there)."""
        while self._runtime:
            name, reason, tried = self._runtime.popleft()
            script = editscript.diff(self.source, self.source.without(name), self.version)
            self._origin = "runtime"
            try:
                self.remove_failed(name, reason, script, node)
            except JournalError as problem:  # it stays out of the run, and in the program for now
                if not tried:
                    log.error("cannot remove the failed node %s yet: %s", name, describe(problem))
                self._runtime.appendleft((name, reason, True))
                return
            except ProgramError as problem:  # it stays out of the run; the log says why it is still listed
                log.error("cannot remove the failed node %s: %s", name, describe(problem))
                continue
            finally:
                self._origin = "socket"

    def remove_failed(self, name: str, error: str, script: editscript.EditScript, node: PlanNode) -> Reply:
        """Commit ``script``, the removal of node ``name`` that failed with ``error`` (here or in
        the run a replay repeats): journaled with the error and the patch that added the node,
        listed by STATUS, and forgotten by the UNDO history."""
        added_by = self.added_by.get(name)
        record = {"error": error, "added_by": added_by}
        reply = self.commit("REMOVE", name, script, node, forgets=name, record=record)
        self.removed.append({"node": name, "patch_id": reply.patch_id, "point": reply.point, **record})
        log.warning("removed node %s after it failed (patch %s)", name, reply.patch_id)
        return reply

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

            self._origin = "replay"
            try:
                reply = verbs.replay(self, entry, node)
            finally:
                self._origin = "socket"
            if not reply.ok:
                reason = describe(ProgramError(reply.errors)) if reply.errors else reply.message
                message = f"journal entry {entry['id']} ({entry['verb']}) failed on replay: {reason}"
                raise ProgramError([Diagnostic(message)])
