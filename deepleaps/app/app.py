"""The embedding API: load a workspace's command file, build the interpreter, run it.

from deepleaps.app.app import App

app = App("resource/configs/default.yaml")
app.run()                      # blocking; or:
handle = app.start()           # a background thread
handle.stop(); handle.join()
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

import deepleaps.runtime.commands
import deepleaps.train.commands  # noqa: F401 - registers the training commands
from deepleaps.app.experiment import Experiment, Mode, open_experiment
from deepleaps.compiler import REGISTRY, Compiled, Plan, compile_file, compile_plan
from deepleaps.control.engine import Controller
from deepleaps.control.journal import FILE as JOURNAL
from deepleaps.control.journal import Journal, read_journal
from deepleaps.control.pacing import Pacing
from deepleaps.control.preparation import restore_program
from deepleaps.control.reload import load_recorded
from deepleaps.control.server import ControlServer, ServerSettings, tls_context
from deepleaps.control.watch import CodeWatcher
from deepleaps.distributed import ddp, ranks
from deepleaps.distributed.lockstep import Lockstep, RecordingJournal
from deepleaps.lang import ProgramError, format_program
from deepleaps.lang.diagnostics import describe, error
from deepleaps.lang.programfile import ProgramFile, load_program_file, merge_loaded, parse_overrides, with_overrides
from deepleaps.runtime import Interpreter, NodeFailed, RunStopped
from deepleaps.train.checkpoint import CheckpointRef, CheckpointStore, set_rng_state

log = logging.getLogger("deepleaps")

#: Exit statuses of a run.
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@attrs.define
class RunSettings:
    """The ``RUN`` section of the command file, overridable from the command line."""

    output: str = "resource/output"
    name: str = "example"
    mode: str = "new"
    source: str | None = None  # RUN.from: the run to resume or finetune from
    seed: int | None = None
    device: str | None = None
    #: Seconds a collective of a distributed run waits for the other ranks before the run fails.
    collective_timeout: float = ranks.TIMEOUT

    @classmethod
    def from_file(cls, program_file: ProgramFile, **overrides: Any) -> RunSettings:
        section = dict(program_file.settings.get("RUN") or {})
        if "from" in section:
            section["source"] = section.pop("from")
        known = {field.name for field in attrs.fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ProgramError([error(f"unknown RUN setting {', '.join(sorted(unknown))}")])
        section.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**section)


class App:
    """One training run of a workspace."""

    def __init__(
        self,
        config: str | Path = "resource/configs/default.yaml",
        workspace: str | Path = ".",
        *,
        serve: bool = True,
        port: int | None = None,
        replay: str | Path | None = None,
        sets: Sequence[str] = (),
        watch_code: bool = False,
        **overrides,
    ):
        self.workspace = Path(workspace).resolve()
        config = Path(config)
        self.config_path = config if config.is_absolute() else self.workspace / config
        if str(self.workspace) not in sys.path:
            sys.path.insert(0, str(self.workspace))
        roots = (self.workspace, self.config_path.parent)
        self._overrides = parse_overrides(sets)
        self.program_file = with_overrides(merge_loaded(load_program_file(self.config_path), roots), self._overrides)
        self.settings = RunSettings.from_file(self.program_file, **overrides)
        # Checked before a run directory exists: a refused setting leaves nothing behind.
        self.server_settings = ServerSettings.from_section(
            self.program_file.settings.get("COMMAND_CONTROLLER"), ipc_port=port
        )
        if serve:
            tls_context(self.server_settings, self.workspace)  # an address it may not bind, refused now
        self.confinement = self.server_settings.confinement(self.workspace, self.workspace / self.settings.output)
        self.registry = REGISTRY
        self._import_modules()
        self.compiled: Compiled = compile_file(
            self.program_file, registry=self.registry, roots=roots, confinement=self.confinement
        )
        for warning in self.compiled.warnings:
            log.warning("%s", warning)
        self.experiment: Experiment | None = None
        self.interpreter: Interpreter | None = None
        self.controller: Controller | None = None
        self.server: ControlServer | None = None
        self.lockstep: Lockstep | None = None
        self._handler: logging.Handler | None = None
        self._serve = serve
        self._watch_code = watch_code
        self.watcher: CodeWatcher | None = None
        self._replay = read_journal(replay) if replay is not None else []
        self.world = ranks.SINGLE
        #: Whether this run joined the process group (and leaves it at its end): an embedding
        #: program that joined it first keeps it.
        self._joined = False

    @staticmethod
    def make_workspace(directory: str | Path = ".") -> Path:
        """Create the example workspace (the seed's layout) in ``directory``."""
        from deepleaps.workspace import make_workspace

        return make_workspace(Path(directory))

    def _import_modules(self) -> None:
        problems = []
        for call in self.program_file.verbs:
            if call.verb in ("IMPORT_MODULE", "ADD_COMMAND_MODULE"):
                try:
                    self.registry.import_module(str(call.argument))
                except Exception as exc:  # any import failure is the user's module
                    problems.append(
                        error(
                            f"cannot import '{call.argument}': {describe(exc)}",
                            call.span,
                            self.program_file.source,
                        )
                    )
        if problems:
            raise ProgramError(problems)

    # ---- running ------------------------------------------------------------------

    def prepare(self) -> Interpreter:
        """Open the run directory and build the interpreter (``run`` calls this)."""
        settings = self.settings
        output = self.workspace / settings.output  # an absolute output stays as it is
        source = self.workspace / settings.source if settings.source else None
        self._joined = not ranks.world().distributed
        self.world = ranks.join(settings.collective_timeout)
        self.experiment = experiment = self._open_experiment(output, source)
        self._log_to(experiment.directory / "run.log" if self.world.is_main else None)
        if experiment.passed_over and self.world.is_main:
            names = ", ".join(path.name for path in experiment.passed_over)
            note = f"resuming {experiment.directory.name}, the newest run with a checkpoint ({names}: none)"
            log.info("%s", note)
            print(note, file=sys.stderr)
        try:
            return self._prepare(experiment)
        except BaseException as problem:
            log.error("the run could not start: %s", describe(problem), exc_info=not isinstance(problem, ProgramError))
            self._shutdown()
            self._close_log()
            raise

    def _open_experiment(self, output: Path, source: Path | None) -> Experiment:
        """Rank 0 creates or reopens the run directory; the other ranks learn it, or why there is
        none, from rank 0."""
        settings = self.settings
        opened: Experiment | tuple | None = None
        if self.world.is_main:
            try:
                opened = open_experiment(output, settings.name, settings.mode, source)
            except ProgramError as problem:
                opened = problem.diagnostics
        opened = self.world.broadcast(opened)
        if not isinstance(opened, Experiment):
            raise ProgramError(opened or ())
        return opened

    def _prepare(self, experiment: Experiment) -> Interpreter:
        directory = experiment.directory
        program_text = "".join(format_program(program) for program in self.program_file.defaults)
        if experiment.mode is not Mode.RESUME and self.world.is_main:
            (directory / "program.dl").write_text(program_text, encoding="utf-8")
            shutil.copyfile(self.config_path, directory / "command.yaml")
        variables: dict[str, Any] = {
            "base": str(directory),
            "workspace": str(self.workspace),
            "latest": experiment.start_from,
            "program_text": program_text,
        }
        # A resumed run goes on with the program as its checkpoint kept it, live changes included.
        resuming = experiment.mode is Mode.RESUME and experiment.start_from is not None
        self.confinement = confinement = self.confinement.in_run(directory)
        payload = {}
        if experiment.start_from and resuming:
            payload = CheckpointStore.load(experiment.start_from, allow_pickle=confinement.pickle)
        saved = payload.get("control")
        if saved:  # the code it ran: the versions its reloads loaded, before anything is built from them
            load_recorded(saved.get("code", {}), self.registry)
        source = restore_program(saved, self.registry, confinement, self._overrides) if saved else self.compiled.source
        plan = compile_plan(source).plan if saved else self.compiled.plan
        interpreter = Interpreter(plan, registry=self.registry, variables=variables)
        interpreter.context.confinement = confinement
        if resuming:
            self._restore(interpreter, payload, experiment)
        self._apply_overrides(interpreter)
        self.interpreter = interpreter
        self._control(interpreter, directory, source, saved)
        log.info("run directory %s (mode %s)", directory, experiment.mode.value)
        return interpreter

    def _control(self, interpreter: Interpreter, directory: Path, source: Plan, saved: Mapping | None) -> None:
        """The patch engine (always: it keeps the monitor file and replays journals) and its server."""
        settings = self.server_settings
        world, main = self.world, self.world.is_main
        # Rank 0 alone journals, serves and writes the monitor file; the others apply what it sends.
        journal = (RecordingJournal if world.distributed else Journal)(directory / JOURNAL) if main else None
        self.controller = Controller(
            interpreter,
            source,
            registry=self.registry,
            definitions=self.program_file.definitions,
            sources=self.program_file.sources,
            roots=(self.workspace, self.config_path.parent),
            run_dir=directory if main else None,
            journal=journal,
            workspace=self.workspace,
            confinement=self.confinement,
            replay=self._replay if main else (),
            restored=saved,
            journaled_ids=[int(entry["id"]) for entry in read_journal(directory / JOURNAL)] if saved else (),
            pacing=Pacing(settings.change_share),
        )
        if world.distributed:
            self.lockstep = Lockstep(self.controller, world, journal if isinstance(journal, RecordingJournal) else None)
        if not main:
            return
        if self._serve:
            self.server = ControlServer(self.controller, settings, self.workspace).start()
        if self._watch_code:
            self.watcher = CodeWatcher(self.controller, self.workspace).start()

    def _apply_overrides(self, interpreter: Interpreter) -> None:
        """``seed``/``device`` from RUN or the command line reach the trainer container config."""
        overrides = {key: value for key in ("seed", "device") if (value := getattr(self.settings, key)) is not None}
        if not overrides:
            return
        for node in interpreter.plan.nodes.values():
            if node.command == "TrainerContainerLoaderCommand":
                interpreter.commands[node.name].extra.update(overrides)

    def _restore(self, interpreter: Interpreter, payload: Mapping[str, Any], experiment: Experiment) -> None:
        assert experiment.start_from is not None  # a resumed run starts from its latest checkpoint
        interpreter.restore(payload["states"], payload["position"])
        exported = dict(payload.get("variables") or {})
        interpreter.context.variables.update(exported, exported=list(exported))
        # Before running: a loader resumed inside an epoch needs its state when it starts.
        for name, state in payload.get("commands", {}).items():
            if name in interpreter.commands:
                interpreter.commands[name].load_state_dict(state)
        # Each rank its own random state, when the run had as many ranks; else rank 0's.
        states = payload.get("rng_ranks") or []
        rng = states[self.world.rank] if len(states) == self.world.size else payload["rng"]
        interpreter.add_resume_hook(lambda _: set_rng_state(rng))
        log.info("resuming from checkpoint %s", experiment.start_from.id)

    def _log_to(self, path: Path | None) -> None:
        """The run's log: ``path``; None (a rank other than 0, which prints its errors) none."""
        handler = logging.FileHandler(path, encoding="utf-8") if path is not None else logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("deepleaps")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self._handler = handler

    def run(self, *, handle_signals: bool | None = None) -> int:
        """Run to the end; the exit status (0 done, 1 a node failed, 130 stopped by a signal).

        Ctrl-C (SIGINT) and SIGTERM stop at the next safe point as ``STOP`` does,
        after a checkpoint the run can resume from; a second Ctrl-C interrupts at once.
        In a distributed run rank 0 alone turns a signal into ``STOP``, so that every rank
        stops at the same step; the launcher's SIGTERM after a Ctrl-C changes nothing.
        """
        interpreter = self.interpreter or self.prepare()
        controller = self.controller
        assert controller is not None  # prepare() made it
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        interrupted = threading.Event()
        previous: Mapping = {}
        if handle_signals:
            world = self.world

            def on_signal(signum, frame):
                if interrupted.is_set():
                    if signum == signal.SIGINT or not world.distributed:
                        raise KeyboardInterrupt
                    return
                interrupted.set()
                if not world.is_main:
                    return  # rank 0 says where every rank stops
                print(
                    "\nstopping after the current step, with a checkpoint (Ctrl-C again to interrupt now)",
                    file=sys.stderr,
                )
                controller.request("STOP", signal.Signals(signum).name, origin="signal")
                if not world.distributed:
                    interpreter.request_stop()  # stops even if the checkpoint fails: the hooks run first

            previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            interpreter.run()
            self._check_ranks()
        except NodeFailed as failure:
            # A user's mistake says all in its message; anything else gets its traceback in run.log.
            log.error("%s", failure, exc_info=None if isinstance(failure.error, ProgramError) else failure.error)
            print(f"error: {failure}", file=sys.stderr)
            return EXIT_FAILED
        except RunStopped:
            pass
        except Exception as problem:  # not a node's failure: resuming, the control channel …
            log.error("the run failed: %s", describe(problem), exc_info=problem)
            print(f"error: {describe(problem)}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_log()
            if self._joined:
                ranks.leave()
        if interrupted.is_set():
            latest = interpreter.context.variables.get("latest")
            if isinstance(latest, CheckpointRef):
                print(
                    f"stopped after checkpoint {latest.id}; `deepleaps run --mode resume` goes on from it",
                    file=sys.stderr,
                )
            return EXIT_INTERRUPTED
        missed = self.controller.unreplayed() if self.controller is not None else []
        if missed:
            first, point = missed[0], missed[0]["point"]
            message = (
                f"{len(missed)} journal entries were not replayed: the run never reached the point of entry "
                f"{first.get('id')} ({first.get('verb')} at {point.get('node')} {point.get('counters')})"
            )
            print(f"error: {message}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK

    def _check_ranks(self) -> None:
        """At the end of a distributed run: the weights are the same on every rank (rank 0 says so).

        Raises:
            RuntimeError: they are not.
        """
        container = self.interpreter.context.container if self.interpreter is not None else None
        if self.lockstep is not None:
            self.lockstep.finish()
        if not self.world.distributed or container is None:
            return
        digests = self.world.gather(ddp.fingerprint(container.model))
        if not self.world.is_main:
            return
        assert digests is not None  # rank 0 gathers
        if len(set(digests)) > 1:
            raise RuntimeError(f"the weights differ between ranks: {', '.join(d[:12] for d in digests)}")
        note = f"the weights are the same on all {self.world.size} ranks (sha256 {digests[0][:12]})"
        log.info("%s", note)
        print(note, file=sys.stderr)

    def _close_log(self) -> None:
        handler = self._handler
        if handler is not None:
            logging.getLogger("deepleaps").removeHandler(handler)
            handler.close()
            self._handler = None

    def _shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.controller is not None:
            self.controller.close()
            if self.controller.monitor is not None:
                self.controller.monitor.write(self.controller.version)
        if self.server is not None:
            self.server.close()

    def start(self) -> RunHandle:
        """Run in a background thread; the handle stops it and waits for it."""
        self.prepare()
        handle = RunHandle(self)
        handle.thread.start()
        return handle


class RunHandle:
    def __init__(self, app: App):
        self.app = app
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, name="deepleaps-run", daemon=True)

    def _run(self) -> None:
        self.status = self.app.run(handle_signals=False)

    def stop(self) -> None:
        """Stop at the next safe point."""
        assert self.app.interpreter is not None  # App.start prepared it
        self.app.interpreter.request_stop()

    def join(self, timeout: float | None = None) -> int | None:
        self.thread.join(timeout)
        return self.status
