"""Real trainings for the control-channel tests, and what the tests need to watch them.

:func:`make_control_workspace` makes the example workspace (``deepleaps init``)
and adds a tiny in-memory data set (:data:`BATCHES_PER_EPOCH` batches an
epoch) and a ``ThrottleCommand`` that sleeps a little in every batch, so that
a training runs for as long as a test needs at a small cost in CPU.
:func:`write_command_file` writes a command file for it: metrics every batch,
the control server on a free port, ``COMMAND_CONTROLLER`` settings as given.

:class:`Training` runs ``deepleaps run --port 0 --config FILE`` as a
subprocess in the workspace, waits until its control server answers, and
kills it when the test ends. Every wait is bounded: a training that does not
do what a test waits for fails the test with the training's output, it never
hangs it.

:class:`InProcess` is the patch engine without a training: a Controller over a
one-node program and a trainer container with a tiny model, in the test's own
process, for what needs no step to run (a check, a refusal, a fault).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from workspace_fixtures import TINY_DATASET, deepleaps_command
from workspace_fixtures import environment as workspace_environment

import deepleaps.runtime.commands  # noqa: F401  (registers PrintCommand)
from deepleaps.compiler import REGISTRY, compile_source
from deepleaps.control.client import Client, ControlError
from deepleaps.control.engine import Controller
from deepleaps.control.framing import HEADER
from deepleaps.control.journal import Journal, read_journal
from deepleaps.runtime import Interpreter
from deepleaps.train import TrainerContainer
from deepleaps.workspace import make_workspace

#: Batches of the training set per epoch, and images per batch.
BATCHES_PER_EPOCH = 4
BATCH_SIZE = 8
#: How long ``ThrottleCommand`` sleeps in each batch by default.
THROTTLE = 0.02
#: The longest any single wait of these helpers lasts.
WAIT = 60.0

THROTTLE_COMMAND = '''\
"""A command that sleeps: keeps a test training slow enough to be steered, and cheap."""

import time

import attrs

from deepleaps.compiler import Kind
from deepleaps.runtime import Command, command


@command
class ThrottleCommand(Command):
    name = "ThrottleCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        seconds: float = 0.02

    def run(self, ctx):
        time.sleep(self.args.seconds)
'''

TRAINER = {
    "container": "src.trainer.ExampleContainer.ExampleContainer",
    "seed": 0,
    "device": "cpu",
    "model": {"class": "src.model.SimpleConv.SimpleConv", "args": {"classes": 3, "width": 4}},
    "optimizer": {"name": "Adam", "lr": 0.01},
    "loss": {"name": "CrossEntropyLoss"},
    "data": {
        "train": {
            "dataset": {"class": "src.ctl_tiny.TinyDataset", "args": {"size": BATCH_SIZE * BATCHES_PER_EPOCH}},
            "loader": {"batch_size": BATCH_SIZE, "shuffle": True, "num_workers": 0},
        },
        "valid": {
            "dataset": {"class": "src.ctl_tiny.TinyDataset", "args": {"size": 16, "seed": 2}},
            "loader": {"batch_size": 16, "shuffle": False},
        },
    },
}
TRAINER_CONFIG = "resource/configs/trainer/ControlTiny.yaml"

#: The training program: an endless (or ``epochs`` long) loop of throttled, logged batches.
PROGRAM = """\
$root(
    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
        $TRAINING_BATCH( $TRAINING_STEP -> $LOG_METRICS -> $THROTTLE ){save}
    )
)
"""


def make_control_workspace(directory: Path) -> Path:
    """The example workspace in ``directory`` with the tiny data set and ``ThrottleCommand``."""
    make_workspace(directory)
    (directory / "src" / "ctl_tiny.py").write_text(TINY_DATASET, encoding="utf-8")
    (directory / "src" / "ipc" / "Throttle.py").write_text(THROTTLE_COMMAND, encoding="utf-8")
    (directory / TRAINER_CONFIG).write_text(yaml.safe_dump(TRAINER, sort_keys=False), encoding="utf-8")
    return directory


def program_text(*, save_each_epoch: bool = False) -> str:
    """The DEFAULT program of :func:`write_command_file`."""
    return PROGRAM.replace("{save}", " -> MAIN_MODEL_SAVE" if save_each_epoch else "")


def write_command_file(
    workspace: Path,
    name: str,
    *,
    epochs: int = 1000,
    throttle: float = THROTTLE,
    save_each_epoch: bool = False,
    controller: Mapping[str, Any] | None = None,
) -> str:
    """A command file for :data:`PROGRAM`; its path relative to the workspace.

    ``epochs`` steps of TRAINING_LOADER (the default runs until stopped),
    metrics.csv every batch, a checkpoint at the end of every epoch if
    ``save_each_epoch``, and ``controller`` added to the ``COMMAND_CONTROLLER``
    section (which binds 127.0.0.1).
    """
    default = yaml.safe_load((workspace / "resource/configs/default.yaml").read_text(encoding="utf-8"))
    defines = default["DEFINE"]
    config = {
        "DEFAULT": [program_text(save_each_epoch=save_each_epoch)],
        "ADD_COMMAND_MODULE": ["src.ipc.CustomCommand", "src.ipc.Throttle"],
        "DEFINE": {
            "TRAINER_CONTAINER_LOAD": {**defines["TRAINER_CONTAINER_LOAD"], "args": TRAINER_CONFIG},
            "TRAINING_LOADER": {"command": "Graph", "repeat": epochs},
            "TRAINING_BATCH": {"command": "DataLoaderCommand", "args": {"loader": "train", "progress": False}},
            "TRAINING_STEP": defines["TRAINING_STEP"],
            "LOG_METRICS": {
                "command": "LogMetricsCommand",
                "args": {"tensorboard": False},
                "run_cycle": "TRAINING_BATCH.step:1",
            },
            "THROTTLE": {"command": "ThrottleCommand", "args": {"seconds": throttle}},
            "MAIN_MODEL_SAVE": defines["MAIN_MODEL_SAVE"],
        },
        "COMMAND_CONTROLLER": {"ipc_host": "127.0.0.1", "ipc_port": 0, **dict(controller or {})},
        "RUN": {"output": "resource/output", "name": name, "mode": "new"},
    }
    path = Path("resource/configs") / f"{name}.yaml"
    (workspace / path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return str(path)


# ---- processes ------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    env = workspace_environment()
    # One thread per training: the tests start several, beside other tests.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def run_cli(workspace: Path, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """``deepleaps ARGS`` in ``workspace``, to its end; fails the test if it takes longer than ``timeout``."""
    try:
        return subprocess.run(
            [*deepleaps_command(), *args],
            cwd=workspace,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"deepleaps {' '.join(args)} did not finish in {timeout} s:\n{expired.stderr}")


T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], what: str, *, timeout: float = WAIT, interval: float = 0.05, on_fail=None
) -> T:
    """Poll ``condition`` until it returns something true (and return it); fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            details = on_fail() if on_fail is not None else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{details}")
        time.sleep(interval)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file another process appends to (a torn last line is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


class Training:
    """``deepleaps run`` of a command file in a workspace, as a subprocess.

    With ``private`` the server's token and ``control.json`` go to a folder of
    their own, so that several trainings can share a workspace; otherwise they
    are where ``deepleaps send`` looks for them (``.deepleaps/``).
    """

    def __init__(
        self,
        workspace: Path,
        name: str,
        *,
        epochs: int = 1000,
        throttle: float = THROTTLE,
        save_each_epoch: bool = False,
        controller: Mapping[str, Any] | None = None,
        private: bool = True,
        args: Sequence[str] = (),
    ):
        self.workspace = workspace
        self.name = name
        controller = dict(controller or {})
        if private:
            controller.setdefault("token_file", f".deepleaps/{name}/control.token")
        self.config = write_command_file(
            workspace, name, epochs=epochs, throttle=throttle, save_each_epoch=save_each_epoch, controller=controller
        )
        token_file = Path(controller.get("token_file", ".deepleaps/control.token"))
        self.info_path = workspace / token_file.parent / "control.json"
        self.args = list(args)
        self.process: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.token: str | None = None
        logs = workspace / "test-logs"
        logs.mkdir(exist_ok=True)
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        self._run_dir: Path | None = None

    # ---- life ----------------------------------------------------------------------------

    def start(self, *, wait_metrics: bool = True) -> Training:
        """Start it and wait until its server answers (and, with ``wait_metrics``, a batch is logged)."""
        with contextlib.suppress(FileNotFoundError):
            self.info_path.unlink()
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*deepleaps_command(), "run", "--port", "0", "--config", self.config, *self.args],
                cwd=self.workspace,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        self.info = wait_for(self._read_info, "the control server to write control.json", on_fail=self.describe)
        self.token = Path(self.info["token_file"]).read_text().strip()
        wait_for(self._answers, "the control server to answer PING", on_fail=self.describe)
        if wait_metrics:
            wait_for(lambda: self.metrics(), "the first row of metrics.csv", on_fail=self.describe)
        return self

    def _read_info(self) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            pytest.fail(f"the training exited with {self.process.returncode} before serving\n{self.describe()}")
        try:
            info = json.loads(self.info_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return info if self._serves(info.get("pid")) else None

    def _serves(self, pid: int | None) -> bool:
        """Whether the process that wrote control.json is this training's."""
        return pid == self.process.pid

    def _answers(self) -> bool:
        try:
            with self.client(timeout=5) as client:
                return bool(client.send("PING").get("ok"))
        except ControlError:
            return False

    def kill(self) -> None:
        """End the process at once (SIGKILL) if it still runs, and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the training did not exit within {timeout} s\n{self.describe()}")

    # ---- talking to it ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.info["host"]

    @property
    def port(self) -> int:
        return self.info["port"]

    def client(self, *, token: str | None = None, timeout: float = 30) -> Client:
        """A connected :class:`Client` (``with training.client() as client: ...``)."""
        cafile = self.info.get("tls_cert")
        return Client(
            self.host, self.port, token or self.token, workspace=self.workspace, timeout=timeout, cafile=cafile
        )

    def send(self, verb: str, payload: str = "", *, timeout: float = 30) -> dict[str, Any]:
        """One request on a new connection; the JSON reply."""
        with self.client(timeout=timeout) as client:
            return client.send(verb, payload)

    def connect_raw(self, timeout: float = 10) -> socket.socket:
        """A plain TCP connection to the server (for hand-made frames)."""
        return socket.create_connection((self.host, self.port), timeout=timeout)

    # ---- what it wrote ---------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:

            def find() -> Path | None:
                match = re.search(r"^run directory: (.+)$", self.stderr(), re.MULTILINE)
                return Path(match.group(1).strip()) if match else None

            self._run_dir = wait_for(find, "the run directory", on_fail=self.describe)
        return self._run_dir

    def metrics(self) -> list[dict[str, str]]:
        """The rows of the run's metrics.csv so far."""
        return read_csv(self.run_dir / "metrics.csv")

    def last_logged_step(self) -> int:
        rows = self.metrics()
        return int(rows[-1]["total_step"]) if rows else 0

    def wait_logged(self, total_step: int, timeout: float = WAIT) -> list[dict[str, str]]:
        """Wait until metrics.csv has a row for batch ``total_step``; the rows."""

        def logged():
            rows = self.metrics()
            return rows if rows and int(rows[-1]["total_step"]) >= total_step else None

        return wait_for(logged, f"metrics.csv to reach total_step {total_step}", timeout=timeout, on_fail=self.describe)

    def journal(self) -> list[dict[str, Any]]:
        path = self.run_dir / "journal.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        status = None if self.process is None else self.process.poll()
        return (
            f"training {self.name} (exit status {status})\n"
            f"--- stdout (end) ---\n{self.stdout()[-3000:]}\n--- stderr (end) ---\n{self.stderr()[-3000:]}"
        )


@contextlib.contextmanager
def running(workspace: Path, name: str, **options: Any) -> Iterator[Training]:
    """A started :class:`Training` that is always killed at the end."""
    training = Training(workspace, name, **options)
    try:
        yield training.start()
    finally:
        training.kill()


def batch_point(point: Mapping[str, Any]) -> int:
    """The batches done (TRAINING_BATCH's total_step) at a reply's point: a change applied
    there first acts on batch ``batch_point(point) + 1``.

    A safe point is the start of a graph step, before its counters move: at
    TRAINING_BATCH's, its total_step counts the batches done; at
    TRAINING_LOADER's (between epochs), its total_step counts whole epochs.
    """
    counters = point["counters"]
    if point["node"] == "TRAINING_BATCH":
        return counters["total_step"]
    if point["node"] == "TRAINING_LOADER":
        return counters["total_step"] * BATCHES_PER_EPOCH
    raise AssertionError(f"unexpected safe point {point}")


def frame(payload: bytes) -> bytes:
    """An 8-byte big-endian length and the payload."""
    return HEADER.pack(len(payload)) + payload


def read_reply(sock: socket.socket, timeout: float = 10) -> dict[str, Any] | None:
    """One framed JSON reply, or None if the server closed the connection first."""
    sock.settimeout(timeout)
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    body = _recv_exactly(sock, size)
    return None if body is None else json.loads(body.decode("utf-8"))


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def is_closed(sock: socket.socket, timeout: float = 10) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout`` seconds, reading what is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(4096):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


# ---- in process ------------------------------------------------------------------------------


class InProcess:
    """A :class:`Controller` with a journal in ``directory``, over ``$root( *PrintCommand )``
    and a ``container`` (a TrainerContainer class) holding a 2×2 linear model and the
    ``optimizer`` configuration given; nothing runs until :meth:`send`."""

    def __init__(
        self,
        directory: Path,
        optimizer: Mapping[str, Any],
        container: type[TrainerContainer] = TrainerContainer,
    ):
        compiled = compile_source('$root( *PrintCommand[content="x"] )', registry=REGISTRY)
        self.interpreter = Interpreter(compiled.plan, registry=REGISTRY)
        self.journal = Journal(directory / "journal.jsonl")
        self.controller = Controller(self.interpreter, compiled.source, registry=REGISTRY, journal=self.journal)
        model = {"class": "torch.nn.Linear", "args": {"in_features": 2, "out_features": 2}}
        self.container = container({"device": "cpu", "model": model, "optimizer": dict(optimizer)})
        self.interpreter.context.container = self.container
        self.node = self.interpreter.plan.nodes[self.interpreter.plan.root]

    def send(self, verb: str, payload: str = "") -> dict[str, Any]:
        """Carry out ``VERB payload`` at the root's safe point; the JSON reply."""
        future = self.controller.request(verb, payload)
        self.controller.on_safe_point(self.interpreter, self.node)
        return future.result().to_json()

    def journaled(self) -> list[dict[str, Any]]:
        return read_journal(self.journal.path)
