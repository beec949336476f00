"""The controller's commit protocol over a real interpreter, stepped safe point by safe point
(docs/design.md §6).

:class:`Run` runs ``$root( $G( $A -> $B ) )`` (``G`` repeats forever) in a
thread that parks at every safe point of ``G``, after the controller's hook:
a request queued meanwhile is served at the next one. :func:`replayed` runs
the start program again with the journal to replay, up to the same point.

:class:`ControllerMachine` is a Hypothesis state machine over a Run. Each rule
queues requests (ADD, REMOVE, SET, APPLY, PATCH, UNDO, EXPORT), lets one step
of ``G`` run and reads the replies. Faults come with them: a journal whose
writes fail while it is broken, a command that raises on its first run (added
with ``on_error: remove``, so the runtime removes it), arguments that are
unknown, of the wrong type or a malformed ``run_cycle``, edit scripts computed
against an older version, malformed edit scripts.

A model keeps the program, its version, the UNDO stack and the journal as
they must be: the program a change makes comes from the compiler's own
functions (resolve, diff, apply, the whole-program checks), and whether a
generated request is valid is known where it is generated. After every rule:

- reply ok ⇔ journaled ⇔ in effect: the controller's program, version, UNDO
  history, the installed plan, the journal and the next step's trace are the
  model's, and a refused request left all of them as they were;
- a fresh interpreter and controller replaying the journal from the start
  program, run to the same safe point, ran the same steps and have the same
  program, version and UNDO history (but for the removals of failed nodes the
  run still owes a broken journal, which such a replay makes itself);
- ``UNDO`` restores the exact program before the change it undoes;
- a controller resumed from what a checkpoint keeps has the same UNDO history;
- no reply carries a Python exception: each refusal is a diagnostic or a sentence.

The tests after the machine are the cases it found, one each.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import deepleaps.runtime.commands  # noqa: F401  (registers Graph)
from deepleaps.compiler import REGISTRY, Kind, OnError, Plan, PlanNode, compile_plan, compile_source, resolve
from deepleaps.control import editjson, editscript
from deepleaps.control.engine import Controller
from deepleaps.control.history import HISTORY
from deepleaps.control.identity import match_identities, written_names
from deepleaps.control.journal import Journal, read_journal
from deepleaps.control.preparation import check_program
from deepleaps.control.replies import Reply
from deepleaps.lang import ProgramError, ast, parse
from deepleaps.lang.diagnostics import SourceText
from deepleaps.lang.programfile import load_program_file
from deepleaps.runtime import Command, Context, Interpreter
from deepleaps.workspace.confine import Confinement

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
    return json.dumps(editjson.script_to_data(script))


# ---- what the replies must look like --------------------------------------------------------

_EXCEPTION_LINE = re.compile(r"^\s*(error: )?[A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt)\b")


def assert_no_exception(reply: Reply) -> None:
    """A refusal is a diagnostic or a sentence, never a Python exception's text."""
    texts = [reply.message, *(diagnostic.message for diagnostic in reply.errors)]
    for text in texts:
        assert text.strip(), reply
        assert "Traceback" not in text, reply
        assert not any(_EXCEPTION_LINE.match(line) for line in text.splitlines()), reply
        assert not re.fullmatch(r"(error: )?'[^']*'", text.strip()), reply


def forgotten(undo: list[tuple[int, Plan]], program: Plan, name: str) -> list[tuple[int, Plan]]:
    """The UNDO stack ``undo`` (patch ids and the programs before them) that led to
    ``program``, as if node ``name`` had never been in any of its programs: the changes
    that only made that node leave it."""
    afters = [before for _, before in undo[1:]] + [program]
    kept = []
    for (patch_id, before), after in zip(undo, afters, strict=True):
        before, after = (plan.without(name) if name in plan else plan for plan in (before, after))
        if editscript.diff(before, after):
            kept.append((patch_id, before))
    return kept


def same(a: Plan, b: Plan) -> bool:
    """The same program, argument types included (``1`` is not ``1.0``)."""
    return a == b and not editscript.diff(a, b)


# ---- requests -------------------------------------------------------------------------------

#: A generator's expectation: the request is valid (refused only while the journal is broken).
VALID = "valid"

TEXTS = ["", "hi", 'say "hi"', "back\\slash", "é€😀", "x" * 30]
COUNTS = [0, 1, -7, 2**40]
VARIABLE = ast.Variable("msg")

#: ``(key, value, phrase)``: argument values no node takes, and the phrase of the refusal.
BAD_ARGUMENTS = [
    ("bogus", 1, "unknown argument 'bogus' for"),
    ("count", "many", "argument 'count' of Note expects int"),
    ("count", 1.5, "argument 'count' of Note expects int"),
    ("text", 5, "argument 'text' of Note expects str"),
    ("run_cycle", "every 3", "'run_cycle' must look like"),
    ("run_cycle", "G.step:0", "'run_cycle' must look like"),
    ("run_cycle", 3, "'run_cycle' must look like"),
    ("on_error", "explode", "'on_error' must be one of"),
]
#: Options any leaf takes that leave the trace as it is (G's step moves every step).
GOOD_OPTIONS = [("run_cycle", "G.step:1"), ("on_error", "remove")]


def literal(value: Any) -> str:
    """A value as the language writes it."""
    if isinstance(value, ast.Variable):
        return f"${value.name}"
    return json.dumps(value, ensure_ascii=False)


def arguments_text(arguments: dict[str, Any]) -> str:
    return "[" + ", ".join(f"{key}={literal(value)}" for key, value in arguments.items()) + "]" if arguments else ""


class Marker(enum.Enum):
    #: A request that is not one: refused whatever the program is.
    MALFORMED = "malformed"


MALFORMED = Marker.MALFORMED


@attrs.frozen
class Request:
    verb: str
    payload: str
    #: VALID, a phrase the refusal must contain, or None: the model alone decides.
    expect: str | None = None
    #: SET and EXPORT: the value; PATCH: the edit script; MALFORMED: the model needs not look.
    value: Any = None


class ControllerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        self.run = Run(Path(self.directory.name))
        self.journal, self.controller, self.stepper = self.run.journal, self.run.controller, self.run.stepper
        self.interpreter = self.controller.interpreter
        self.ran: list = []  # the trace of every step so far
        # The model.
        self.source: Plan = START.source
        self.version = 1
        self.undo: list[tuple[int, Plan]] = []  # (patch id, program before) of each change UNDO can take back
        self.entries: list[tuple] = []  # (id, verb, text, origin, version) of each journal entry
        self.disabled: set[str] = set()  # nodes that failed and are still in the program
        self.owed: list[str] = []  # failed nodes whose removal the journal has not taken yet, in order
        self.variables: dict[str, Any] = {}

    def teardown(self) -> None:
        if hasattr(self, "run"):
            self.stepper.stop()
            self.directory.cleanup()

    # ---- the model ------------------------------------------------------------------------------

    def others(self) -> list[str]:
        """The nodes a request may name: all but the root and G (without which the run ends)."""
        return [name for name in self.source.nodes if name not in ("root", "G")]

    def expected_step(self) -> tuple[list, list[str]]:
        """The trace of G's next step and the nodes that fail in it, in order."""
        trace, failing = [], []
        for name in self.source.run_order("G"):
            node = self.source[name]
            if name in self.disabled:
                continue
            if node.command == "Flaky":
                trace.append((name, "flaky"))
                failing.append(name)  # an enabled Flaky has not run yet
                continue
            text = node.args.get("text", "")
            if isinstance(text, ast.Variable):
                if text.name not in self.variables:
                    failing.append(name)
                    continue
                text = self.variables[text.name]
            trace.append((name, text, node.args.get("count", 0)))
        return trace, failing

    def point(self) -> dict:
        step = self.stepper.points - 1
        return {"node": "G", "path": "root/G", "counters": {"step": step, "total_step": step, "epoch": 0}}

    def journaled(self, verb: str, text: str, origin: str = "socket") -> int:
        patch_id = len(self.entries) + 1
        self.entries.append((patch_id, verb, text, origin, self.version))
        return patch_id

    def change(self, after: Plan, verb: str, text: str, origin: str = "socket") -> int:
        """The model's program becomes ``after`` through a journaled change; its patch id."""
        before = self.source
        self.source = after
        self.version += 1
        self.disabled &= after.nodes.keys()
        self.owed = [name for name in self.owed if name in after]
        patch_id = self.journaled(verb, text, origin)
        if verb == "UNDO" and origin == "socket":
            self.undo.pop()
        elif origin == "runtime":  # the failed node leaves the UNDO history: no UNDO brings it back
            self.undo = forgotten(self.undo, before, text)
        else:
            self.undo.append((patch_id, before))
            del self.undo[:-HISTORY]
        return patch_id

    def committed(self, script: editscript.EditScript) -> Plan | str | None:
        """What committing ``script`` makes: the new program, the refusal's reason, or None when
        it changes nothing (an empty script, or one that sets what is set already)."""
        try:
            after = editscript.apply(self.source, script)
            if not editscript.diff(self.source, after):
                return None
            check_program(after, COMMANDS, self.controller.sources, self.controller.confinement)
            compile_plan(after)
        except ProgramError as problem:
            return problem.render()
        if self.journal.broken:
            return "the journal cannot be written"
        return after

    def resolved(self, text: str, verb: str, *, base: bool) -> Plan:
        """The program the compiler makes of an ADD (``base``) or APPLY text."""
        name = f"<{verb}>"
        return resolve(
            [parse(text, name)],
            DEFINITIONS.definitions,
            registry=COMMANDS,
            sources={**self.controller.sources, name: SourceText(name, text)},
            base=self.source if base else None,
            added_while_running=True,
            known=self.source.nodes,
        )

    def outcome(self, request: Request) -> Plan | str | None:
        """What ``request`` makes of the model's program (see :meth:`committed`)."""
        verb, payload = request.verb, request.payload
        try:
            if verb == "ADD":
                return self.committed(editscript.diff(self.source, self.resolved(payload, verb, base=True)))
            if verb == "APPLY":  # its anonymous nodes are the running ones they match (tests/test_identity.py)
                named = written_names(parse(payload))
                edited = match_identities(self.source, self.resolved(payload, verb, base=False), named)
                return self.committed(editscript.diff(self.source, edited))
            if verb == "REMOVE":
                plan = self.source
                for name in payload.split():
                    if name not in plan or name == plan.root:
                        return f"cannot remove '{name}'"
                    plan = plan.without(name)
                return self.committed(editscript.diff(self.source, plan)) if plan is not self.source else "no names"
            if request.value is MALFORMED:
                return "malformed"
            if verb == "SET":
                node, key = payload.split(" ", 1)[0].split(".")
                if node not in self.source:
                    return f"no node or object '{node}'"
                after = editscript.apply(self.source, [editscript.SetArgument(node, key, request.value)])
                return self.committed(editscript.diff(self.source, after))
            if verb == "PATCH":
                if request.value.base_version != self.version:
                    return "stale edit script"
                return self.committed(request.value)
            assert verb == "UNDO"
            if not self.undo:
                return "nothing to undo"
            return self.committed(editscript.diff(self.source, self.undo[-1][1]))
        except ProgramError as problem:
            return problem.render()

    # ---- serving --------------------------------------------------------------------------------

    def serve(self, *requests: Request) -> None:
        """Queue ``requests``, let one step of G run, check the step and every reply."""
        trace, failing = self.expected_step()
        if failing or self.owed:  # the runtime's removals come first: what a request expects may not hold
            requests = tuple(attrs.evolve(request, expect=None) for request in requests)
        plan, commands = self.interpreter.plan, dict(self.interpreter.commands)
        version = self.version
        futures = []
        for request in requests:
            future = self.controller.request(request.verb, request.payload)
            if future.done():  # refused on arrival, against the program nothing was about to change
                assert not future.result().ok, "applied before a safe point"
                assert not self.owed and not futures, "refused on arrival while a change was due"
                self.check_reply(request, future.result())
            else:
                futures.append((request, future))
        del self.run.trace[:]
        self.stepper.advance()
        assert self.run.trace == trace, "the step ran another program than the model's"
        self.ran += trace
        self.disabled |= set(failing)
        self.owed += failing
        # The runtime removes failed nodes first, in order, each through the commit protocol;
        # while the journal cannot take their removal they stay in the program.
        while self.owed and not self.journal.broken:
            name = self.owed.pop(0)
            self.change(self.source.without(name), "REMOVE", name, origin="runtime")
        for request, future in futures:
            assert future.done(), f"{request.verb} was not answered at the safe point"
            self.check_reply(request, future.result())
        if self.version == version:  # nothing changed: the very same plan and command instances
            assert self.interpreter.plan is plan
            assert self.interpreter.commands.keys() == commands.keys()
            assert all(self.interpreter.commands[name] is command for name, command in commands.items())

    def check_reply(self, request: Request, reply: Reply) -> None:
        assert reply.verb == request.verb
        outcome = self.outcome(request) if request.verb != "EXPORT" else self.exported(request)
        if isinstance(outcome, str):
            assert not reply.ok, (request, outcome, reply)
            assert_no_exception(reply)
            assert reply.version is None and reply.patch_id is None, reply
            if request.expect == VALID:
                assert self.journal.broken, (request, reply.message)
                assert "the journal cannot be written" in reply.message, reply.message
            elif request.expect is not None:
                assert request.expect in reply.message, (request, reply.message)
            return
        assert reply.ok, (request, reply.message)
        assert request.expect in (None, VALID), (request, reply)
        if outcome is None:  # no change: nothing journaled
            assert request.verb != "UNDO", "every change in the UNDO history changed the program"
            assert reply.message == "no change" and reply.patch_id is None, reply
        elif isinstance(outcome, Plan):
            text = str(self.undo[-1][0]) if request.verb == "UNDO" else request.payload
            if request.verb == "UNDO":
                assert same(outcome, self.undo[-1][1])
            # The reply's edit script, the one journaled, takes the program where it now is.
            assert same(editscript.apply(self.source, editjson.script_from_data(reply.script)), outcome)
            assert reply.patch_id == self.change(outcome, request.verb, text), reply
        else:  # EXPORT
            assert reply.patch_id == self.journaled("EXPORT", request.payload), reply
            self.variables["msg"] = request.value
        assert reply.version == self.version, reply
        if reply.patch_id is not None:
            assert reply.point == self.point()

    def exported(self, request: Request) -> str | bool:
        if request.value is MALFORMED:
            return "malformed"
        return "the journal cannot be written" if self.journal.broken else True

    # ---- requests -------------------------------------------------------------------------------

    def value_for(self, data, node: PlanNode) -> tuple[str, Any, str]:
        """``(key, value, expectation)`` of an argument to set on ``node``."""
        keys = ["text", "count"] if node.command == "Note" else []
        kind = data.draw(st.sampled_from(["argument", "argument", "option", "bad"] if keys else ["option", "bad"]))
        if kind == "argument":
            key = data.draw(st.sampled_from(keys))
            values = TEXTS if key == "text" else COUNTS
            if key == "text" and node.on_error is OnError.REMOVE:
                values = [*values, VARIABLE]
            return key, data.draw(st.sampled_from(values)), VALID
        if kind == "option":
            return (*data.draw(st.sampled_from(GOOD_OPTIONS)), VALID)
        key, value, phrase = data.draw(st.sampled_from(BAD_ARGUMENTS))
        if key in ("text", "count") and node.command != "Note":
            phrase = f"unknown argument '{key}' for {node.command}"
        return key, value, phrase

    def new_node(self, data) -> tuple[str, str]:
        """The text of a node to add, and the expectation."""
        form = data.draw(st.sampled_from(["note", "variable", "define", "flaky", "bad", "unknown"]))
        if form == "note":
            arguments = {"text": data.draw(st.sampled_from(TEXTS)), "count": data.draw(st.sampled_from(COUNTS))}
            return "*Note" + arguments_text(data.draw(st.sampled_from([{}, arguments]))), VALID
        if form == "variable":
            return "*Note" + arguments_text({"text": VARIABLE}), VALID
        if form == "define":
            return "C", VALID
        if form == "flaky":
            return "*Flaky", VALID
        if form == "bad":
            key, value, phrase = data.draw(st.sampled_from(BAD_ARGUMENTS))
            return "*Note" + arguments_text({key: value}), phrase
        return data.draw(
            st.sampled_from(
                [
                    ("*Nope", "unknown command class '*Nope'"),
                    ("$Missing", "unknown name '$Missing'"),
                    ("*Note[", "expected ']' or an argument name"),
                ]
            )
        )

    def add_request(self, data) -> Request:
        node, expect = self.new_node(data)
        children = list(self.source["G"].children)
        form = data.draw(st.sampled_from(["G", "after", "edge", "root"] if children else ["G", "root"]))
        if form == "G":
            return Request("ADD", f"$G( {node} )", expect)
        if form == "after":
            return Request("ADD", f"$G( ${data.draw(st.sampled_from(children))} -> {node} )", expect)
        if form == "edge":  # may close a cycle, or be there already
            first, second = data.draw(st.lists(st.sampled_from(children), min_size=2, max_size=2))
            return Request("ADD", f"$G( ${first} -> ${second} )")
        return Request("ADD", node, expect)  # a statement of its own goes to the root

    def set_request(self, data) -> Request:
        others = self.others()
        form = data.draw(
            st.sampled_from(["node"] * 4 + ["missing", "malformed"] if others else ["missing", "malformed"])
        )
        if form == "missing":
            return Request("SET", 'Zed.text "x"', "SET: no node or object 'Zed'")
        if form == "malformed":
            name = data.draw(st.sampled_from([*others, "Zed"]))
            forms = [(f"{name}.text", "SET needs a target and a value"), (f'{name} "x"', "needs a dot")]
            if name in self.source:
                forms.append((f"{name}.text.deep 1", "a node argument is NODE.argument"))
            payload, phrase = data.draw(st.sampled_from(forms))
            return Request("SET", payload, phrase, MALFORMED)
        name = data.draw(st.sampled_from(others))
        key, value, expect = self.value_for(data, self.source[name])
        return Request("SET", f"{name}.{key} {literal(value)}", expect, value)

    def remove_request(self, data) -> Request:
        others = self.others()
        forms = [
            Request("REMOVE", "Zed", "there is no node 'Zed' to remove"),
            Request("REMOVE", "root", "the root graph cannot be removed"),
            Request("REMOVE", "  ", "REMOVE needs the names of the nodes to remove"),
        ]
        if not others or data.draw(st.integers(0, 3)) == 0:
            return data.draw(st.sampled_from(forms))
        names = data.draw(st.lists(st.sampled_from(others), min_size=1, max_size=2, unique=True))
        return Request("REMOVE", " ".join(names), VALID)

    def apply_request(self, data) -> Request:
        """A whole program: G keeps some of its children (some with new arguments) and gets new ones."""
        items, refusals = [], []
        # A text names its instances itself: it can name again only the nodes of DEFINE entries.
        defined = [name for name in self.source["G"].children if name in DEFINITIONS.definitions]
        for name in data.draw(st.permutations(defined)):
            if data.draw(st.booleans()):
                continue
            node = self.source[name]
            if node.command == "Note" and data.draw(st.booleans()):
                items.append(f"${name}[text={literal(data.draw(st.sampled_from(TEXTS)))}]")
            else:
                items.append(f"${name}")
        for _ in range(data.draw(st.integers(0, 2))):
            node, expectation = self.new_node(data)
            items.insert(data.draw(st.integers(0, len(items))), node)
            if expectation != VALID:
                refusals.append(expectation)
        if not items:
            return Request("APPLY", "$root( $G )", VALID)
        # Some neighbours become chains; the rest stand alone.
        text = items[0]
        for item in items[1:]:
            text += data.draw(st.sampled_from([" -> ", ", "])) + item
        # With two mistakes, which one the refusal names first is the compiler's business; a
        # new C next to $C is that same node (the first instance of C is called C).
        expect = VALID if not refusals else refusals[0] if len(refusals) == 1 else None
        if "C" in items and any(item.startswith("$C") for item in items):
            expect = None
        return Request("APPLY", f"$root( $G( {text} ) )", expect)

    def operations(self, data) -> list[editscript.Operation]:
        """Random operations, each drawn against the program the ones before it make: most fit, some do not."""
        plan = self.source
        operations: list[editscript.Operation] = []
        for _ in range(data.draw(st.integers(1, 3))):
            others = [name for name in plan.nodes if name not in ("root", "G")]
            children, edges = list(plan["G"].children), list(plan["G"].edges)
            names = st.sampled_from([*others, *others, "Zed"])
            kind = data.draw(st.sampled_from(["add", "remove", "set", "unset", "edge", "reorder", "rebind"]))
            new: list[editscript.Operation] = []
            if kind == "add":
                name = data.draw(st.sampled_from(["P", "Q", *others]))
                command = data.draw(st.sampled_from(["Note", "Note", "Flaky", "Nope"]))
                arguments: dict[str, Any] = {"on_error": "remove"}  # as the resolver adds it while running
                if command == "Note":
                    arguments |= data.draw(
                        st.sampled_from([{}, {"text": VARIABLE}, {"count": 4, "text": "p"}, {"count": "x"}])
                    )
                parent = data.draw(st.sampled_from(["G", "G", "G", "A", "Zed"]))
                kind_name = data.draw(st.sampled_from(["leaf", "leaf", "leaf", "graph", "blob"]))
                position = data.draw(st.sampled_from([-1, 0, 1, 99]))
                new.append(editscript.AddNode(name, parent, command, kind_name, arguments, position))
            elif kind == "remove":
                name = data.draw(names)
                if name in plan and data.draw(st.booleans()):  # its edges first, as a diff does
                    new.extend(editscript.diff(plan, plan.without(name)).operations)
                else:
                    new.append(editscript.RemoveNode(name))
            elif kind == "set":
                name = data.draw(names)
                key, value = ("text", "z") if name == "Zed" else self.value_for(data, plan[name])[:2]
                new.append(editscript.SetArgument(name, key, value))
            elif kind == "unset":
                key = data.draw(st.sampled_from(["text", "count", "run_cycle", "bogus"]))
                new.append(editscript.UnsetArgument(data.draw(names), key))
            elif kind == "edge" and edges and data.draw(st.booleans()):
                new.append(editscript.RemoveEdge("G", *data.draw(st.sampled_from(edges))))
            elif kind == "edge" and children:  # may be there already, or close a cycle
                new.append(editscript.AddEdge("G", *data.draw(st.tuples(*[st.sampled_from(children)] * 2))))
            elif kind == "reorder":
                new.append(editscript.ReorderChildren("G", data.draw(st.permutations(children))))
            elif kind == "rebind":
                command, kind_name = data.draw(st.sampled_from([("Note", "leaf"), ("Nope", "leaf"), ("Note", "graph")]))
                new.append(editscript.RebindClass(data.draw(names), command, kind_name))
            operations += new
            with contextlib.suppress(ProgramError):  # the next ones go on from a program that passes the checks
                changed = editscript.apply(plan, new)
                check_program(changed, COMMANDS, {}, Confinement(Path.cwd()))
                plan = changed
        return operations

    def patch_request(self, data, base_version: int) -> Request:
        script = editscript.EditScript(self.operations(data), base_version)
        return Request("PATCH", script_payload(script), None, script)

    def malformed_patch(self, data) -> Request:
        """An edit script that is not one: each must be refused with a sentence."""
        operation = data.draw(
            st.sampled_from(
                [
                    {"op": "add_node", "name": 5, "parent": "G", "command": "Note", "kind": "leaf"},
                    {"op": "add_node", "name": "P", "parent": "G", "command": "Note", "kind": "leaf", "arguments": "x"},
                    {"op": "add_node", "name": "P", "parent": "G", "command": "Note", "kind": "leaf", "position": "x"},
                    {"op": "add_node", "name": "P", "parent": ["G"], "command": "Note", "kind": "leaf"},
                    {"op": "add_node", "name": "P", "parent": "G", "command": 7, "kind": "leaf"},
                    {"op": "add_node", "name": "P", "parent": "G"},
                    {"op": "set_argument", "node": "A", "key": "count", "value": 5},
                    {"op": "set_argument", "node": "A", "key": 3, "value": {"type": "integer", "value": 1}},
                    {"op": "remove_node", "name": None},
                    {"op": "add_edge", "graph": "G", "source": "A", "target": {"x": 1}},
                    {"op": "reorder_children", "graph": "G", "children": 5},
                    {"op": "reorder_children", "graph": "G", "children": ["B", 1]},
                    {"op": "rebind_class", "node": "A", "command": "Note", "kind": 1},
                    {"op": "explode"},
                    "add_node",
                ]
            )
        )
        version = self.version
        payload = data.draw(
            st.sampled_from(
                [
                    json.dumps({"schema": editjson.SCHEMA, "base_version": version, "operations": [operation]}),
                    json.dumps({"schema": editjson.SCHEMA, "base_version": version, "operations": operation}),
                    json.dumps({"schema": "deepleaps.edit/0", "base_version": version, "operations": []}),
                    json.dumps([operation]),
                    "{not json",
                ]
            )
        )
        return Request("PATCH", payload, None, MALFORMED)

    def export_request(self, data) -> Request:
        return data.draw(
            st.sampled_from(
                [
                    Request("EXPORT", 'msg="hi"', VALID, "hi"),
                    Request("EXPORT", "msg=5", VALID, 5),
                    Request("EXPORT", "msg=[1, 2]", VALID, [1, 2]),
                    Request("EXPORT", "msg=hello world", VALID, "hello world"),
                    Request("EXPORT", 'msg="open', "unterminated string", MALFORMED),
                    Request("EXPORT", "msg", "EXPORT needs a target and a value", MALFORMED),
                ]
            )
        )

    def any_request(self, data) -> Request:
        verb = data.draw(st.sampled_from(["ADD", "REMOVE", "SET", "APPLY", "PATCH", "UNDO", "EXPORT"]))
        if verb == "PATCH":
            return self.patch_request(data, self.version)
        if verb == "UNDO":
            return Request("UNDO", "")
        method = {
            "ADD": self.add_request,
            "REMOVE": self.remove_request,
            "SET": self.set_request,
            "APPLY": self.apply_request,
            "EXPORT": self.export_request,
        }[verb]
        return method(data)

    # ---- rules ----------------------------------------------------------------------------------

    @rule(data=st.data())
    def add(self, data) -> None:
        self.serve(self.add_request(data))

    @rule(data=st.data())
    def remove(self, data) -> None:
        self.serve(self.remove_request(data))

    @rule(data=st.data())
    def set_argument(self, data) -> None:
        self.serve(self.set_request(data))

    @rule(data=st.data())
    def apply_program(self, data) -> None:
        self.serve(self.apply_request(data))

    @rule(data=st.data())
    def patch(self, data) -> None:
        self.serve(self.patch_request(data, self.version))

    @rule(data=st.data())
    def stale_patch(self, data) -> None:
        """An edit script computed against an older version of the program."""
        older = data.draw(st.integers(0, self.version - 1))
        self.serve(self.patch_request(data, older))

    @rule(data=st.data())
    def malformed_patch_request(self, data) -> None:
        self.serve(self.malformed_patch(data))

    @rule()
    def undo_last(self) -> None:
        self.serve(Request("UNDO", ""))

    @rule(data=st.data())
    def export(self, data) -> None:
        self.serve(self.export_request(data))

    @rule(data=st.data())
    def together(self, data) -> None:
        """Requests served at one safe point, each computed against the program as it is now:
        an edit script after another change is stale."""
        first, *rest = (self.any_request(data) for _ in range(data.draw(st.integers(2, 3))))
        # What the others expect was drawn against the program before the first: the model decides.
        self.serve(first, *(attrs.evolve(request, expect=None) for request in rest))

    @rule()
    def step(self) -> None:
        self.serve()

    @rule(broken=st.sampled_from([True, False, False]))
    def journal_fault(self, broken: bool) -> None:
        self.journal.broken = broken

    # ---- invariants -----------------------------------------------------------------------------

    @invariant()
    def the_controller_holds_the_models_program(self) -> None:
        controller = self.controller
        assert controller.version == self.version
        assert same(controller.source, self.source)
        assert self.interpreter.plan == compile_plan(self.source).plan
        assert [(applied.patch_id, applied.before) for applied in controller.history] == self.undo
        for applied, (_, before) in zip(controller.history, self.undo):
            assert same(applied.before, before)
        for name in self.disabled:
            assert self.interpreter.states[name].finished
        variables = self.interpreter.context.variables
        assert {name: variables[name] for name in variables.get("exported", [])} == self.variables

    @invariant()
    def a_checkpoint_keeps_the_undo_history(self) -> None:
        interpreter = Interpreter(START.plan, registry=COMMANDS, variables={"trace": []})
        saved = self.controller.saved()
        resumed = Controller(interpreter, self.source, registry=COMMANDS, restored=saved)
        assert [(applied.patch_id, applied.before) for applied in resumed.history] == self.undo
        for applied, (_, before) in zip(resumed.history, self.undo, strict=True):
            assert same(applied.before, before)

    @invariant()
    def the_journal_holds_every_change_and_nothing_else(self) -> None:
        found = [(e["id"], e["verb"], e["text"], e["origin"], e["version"]) for e in self.run.entries()]
        assert found == self.entries

    @invariant()
    def replaying_the_journal_gives_the_same_program(self) -> None:
        """The same program, version and UNDO history (under the replay's own patch ids), but for
        the removals the run still owes the journal: a replay that has no entry left makes them."""
        program, version, history = self.source, self.version, self.undo
        for name in self.owed:
            history = forgotten(history, program, name)
            program, version = program.without(name), version + 1
        controller, trace = self.run.replayed()
        assert controller.unreplayed() == []
        assert trace == self.ran, "the replay ran other steps"
        assert controller.version == version
        assert same(controller.source, program)
        assert [applied.before for applied in controller.history] == [before for _, before in history]


TestController = ControllerMachine.TestCase
# Every step replays the whole journal: runs of 25 steps keep an example quick and still reach
# deep into UNDO histories, failures and faults.
TestController.settings = settings(deadline=None, stateful_step_count=25, suppress_health_check=[HealthCheck.too_slow])


# ---- cases the machine found -----------------------------------------------------------------


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


def test_no_undo_brings_a_failed_node_back_in_the_run_or_its_replay(run):
    assert run.send("SET", 'A.text "x"').ok
    assert run.send("ADD", "$G( *Flaky )").ok
    # Flaky fails in the next step, and the runtime removes it at the safe point, with the error.
    assert run.send("SET", "B.count 5").ok
    removal = run.entries()[-2]
    assert (removal["verb"], removal["origin"], removal["added_by"]) == ("REMOVE", "runtime", 2)
    assert removal["error"] == "ValueError: first run", removal
    assert "Flaky" not in run.controller.source
    nodes = run.controller.source.nodes
    undo = run.send("UNDO")  # undoes the SET of B only
    assert undo.ok and undo.diff == ("~ B.count = 2",), undo
    assert run.controller.source.nodes.keys() == nodes.keys()
    undo = run.send("UNDO")  # the ADD made only Flaky: the next change back is the SET of A
    assert undo.ok and undo.diff == ('~ A.text = "a"',), undo
    assert run.controller.source.nodes.keys() == nodes.keys()
    assert run.send("UNDO").message == "nothing to undo"
    replay = assert_replay_matches(run)
    assert [event["node"] for event in replay.removed] == ["Flaky"]
    # A checkpoint keeps the list STATUS shows.
    interpreter = Interpreter(START.plan, registry=COMMANDS, variables={"trace": []})
    resumed = Controller(interpreter, START.source, registry=COMMANDS, restored=run.controller.saved())
    assert list(resumed.removed) == list(run.controller.removed) and len(resumed.removed) == 1


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
