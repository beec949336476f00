"""Every change rank 0 commits, applied by every rank at the same safe point (docs/distributed.md).

Rank 0 alone serves the control channel, keeps the journal and decides. At every safe point
it announces whether anything happens at the next one: a broadcast of one integer, started
there and awaited at the next safe point, so that it travels while the step runs and adds
no wait of its own. Mostly nothing happens, and that is all. When something does (requests
are queued, a journal is being replayed, a failed node awaits its removal, the run is paused
or stopping), every rank sends rank 0 its random state (a checkpoint written here keeps them
all), rank 0 serves the requests through the commit protocol, and broadcasts the journal
entries it committed, whether the run is paused or stopping, and its ``$latest``. The other
ranks apply the entries through the path a replay takes
(:func:`deepleaps.control.verbs.replay`: module reloads bring their source text, checked
against its hash), then all ranks agree that every one succeeded, or the run ends on all of
them. At every safe point, a model whose parameters changed (or which of them train) is
wrapped again (:func:`deepleaps.distributed.ddp.rewrap`), which gives every rank rank 0's
weights.

A paused run loops here: rank 0 waits a fraction of a second for a request, and every such
round is a collective, so no rank waits long enough for the collective timeout.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Future
from typing import Any

import attrs

from deepleaps.compiler import PlanNode
from deepleaps.control import verbs
from deepleaps.control.engine import Controller
from deepleaps.control.journal import Journal
from deepleaps.distributed import ddp
from deepleaps.distributed.ranks import Announcement, Shared, World
from deepleaps.lang import ProgramError
from deepleaps.lang.diagnostics import Diagnostic, describe
from deepleaps.runtime import Interpreter
from deepleaps.train.checkpoint import rng_state

log = logging.getLogger("deepleaps.distributed")

#: How long a paused rank 0 waits for a request before the next round of the collective.
PAUSE_ROUND = 0.2


class LockstepError(ProgramError):
    """A change that rank 0 committed failed on another rank: the run ends on every rank."""

    def __init__(self, message: str):
        super().__init__([Diagnostic(message)])


class RecordingJournal(Journal):
    """Rank 0's journal, which also hands over the entries written since it was last asked."""

    def __init__(self, path):
        super().__init__(path)
        self._recent: list[dict[str, Any]] = []

    def write(self, entry: dict[str, Any]) -> Future:
        durable = super().write(entry)
        self._recent.append(dict(entry))
        return durable

    def take(self) -> list[dict[str, Any]]:
        recent, self._recent = self._recent, []
        return recent


@attrs.frozen
class Decision:
    """What rank 0 tells the others at a safe point where something happened."""

    entries: list[dict[str, Any]]
    paused: bool
    stop: bool
    latest: Any
    #: Why serving failed on rank 0 (a replayed entry that failed …): the run ends on every rank.
    failed: str | None = None


class Lockstep:
    """The safe-point hook of every rank of a distributed run, in place of the controller's own."""

    def __init__(self, controller: Controller, world: World, journal: RecordingJournal | None = None):
        self.controller = controller
        self.world = world
        self.journal = journal
        interpreter = controller.interpreter
        interpreter.remove_safe_point_hook(controller.on_safe_point)
        interpreter.add_safe_point_hook(self.on_safe_point)
        #: What rank 0 announced at the last safe point about the next (the first: a replayed
        #: journal may have an entry there).
        self._announced: Announcement | None = world.announce([int(world.is_main and controller.due)])

    def on_safe_point(self, interpreter: Interpreter, node: PlanNode) -> None:
        announced, self._announced = self._announced, None
        if announced is not None and announced.wait()[0]:
            held = self._round(interpreter, node, held=False)
            while held:
                held = self._round(interpreter, node, held=True)
        self._rewrap(interpreter)
        controller = self.controller
        wanted = self.world.is_main and (controller.due or controller.holding or interpreter.stop_requested)
        self._announced = self.world.announce([int(wanted)])
        if self.world.is_main:
            controller.tick()

    def finish(self) -> None:
        """The run ended on every rank: receive the last announcement (nothing follows it)."""
        announced, self._announced = self._announced, None
        if announced is not None:
            announced.wait()

    def _round(self, interpreter: Interpreter, node: PlanNode, held: bool) -> bool:
        """One round of the safe point, on every rank; whether the run is held (paused) for another."""
        world, controller = self.world, self.controller
        states = world.gather(rng_state())
        decision: Decision | None = None
        error: Exception | None = None
        if world.is_main:
            world.shared = Shared(rng=states)
            try:
                if held:
                    controller.serve_paused(node, PAUSE_ROUND)
                else:
                    controller.serve(node)
            except Exception as raised:  # told to every rank before it ends the run here
                error = raised
            finally:
                world.shared = None
            assert self.journal is not None  # rank 0 keeps it
            latest = interpreter.context.variables.get("latest")
            failed = describe(error) if error is not None else None
            decision = Decision(self.journal.take(), controller.holding, interpreter.stop_requested, latest, failed)
        decision = world.broadcast(decision if world.is_main else None)
        if error is not None:
            raise error
        if decision.failed is not None:
            raise LockstepError(f"rank 0 failed at a safe point: {decision.failed}; the run ends on every rank")
        problem = None if world.is_main else self._apply(decision, node)
        if decision.entries:
            if not world.all_agree(problem is None):
                raise LockstepError(self._failure(decision, problem))
            self._report(decision, node)
        if decision.stop:
            interpreter.request_stop()
        return decision.paused

    def _apply(self, decision: Decision, node: PlanNode) -> str | None:
        """Apply rank 0's entries on this rank as a replay does; why one failed, or None."""
        controller = self.controller
        self.world.shared = Shared(latest=decision.latest)
        try:
            for entry in decision.entries:
                try:
                    reply = verbs.replay(controller, entry, node)
                except Exception as error:  # a user's mistake says all in its message; a bug gets its traceback
                    traceback = not isinstance(error, ProgramError)
                    log.error("rank %s: patch %s failed", self.world.rank, entry["id"], exc_info=traceback)
                    return f"patch {entry['id']} ({entry['verb']}): {describe(error)}"
                if not reply.ok:
                    return f"patch {entry['id']} ({entry['verb']}): {reply.message}"
        finally:
            self.world.shared = None
        if decision.latest is not None:
            controller.interpreter.context.variables["latest"] = decision.latest
        return None

    def _failure(self, decision: Decision, problem: str | None) -> str:
        ids = ", ".join(str(entry["id"]) for entry in decision.entries)
        what = f"patch{'es' if len(decision.entries) > 1 else ''} {ids}, applied on rank 0,"
        where = f"on rank {self.world.rank}: {problem}" if problem else "on another rank (its output says why)"
        return f"{what} failed {where}; the run ends on every rank"

    def _rewrap(self, interpreter: Interpreter) -> None:
        """Wrap the model again if its parameters, or which of them train, changed: by a change
        applied here, or by a node of the program (one that freezes a layer) in the last step.
        Every rank runs the same program, so every rank finds the same."""
        container = interpreter.context.container
        if container is not None:
            container.model = ddp.rewrap(container.model)

    def _report(self, decision: Decision, node: PlanNode) -> None:
        """One line per applied entry on every rank: where each rank applied what."""
        counters = self.controller.point(node)["counters"]
        for entry in decision.entries:
            where = " ".join(f"{key}={value}" for key, value in counters.items())
            line = f"[rank {self.world.rank}] applied patch {entry['id']} {entry['verb']} at {node.name} {where}\n"
            sys.stderr.write(line)  # one write: the ranks share the launcher's stderr
            sys.stderr.flush()
