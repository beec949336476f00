"""A small example workspace for end-to-end tests, and helpers to run ``deepleaps`` in it.

:func:`make_small_workspace` creates the example workspace (``deepleaps init``)
and adds a tiny synthetic data set (64 training and 32 validation images, four
batches an epoch), a narrow model and command files derived from the
workspace's own ``resource/configs/default.yaml``, so a training of two epochs
takes a few seconds on a CPU. Import the fixtures into a test module::

    from workspace_fixtures import small_workspace  # noqa: F401
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from deepleaps.workspace import make_workspace

#: Batches of the training set per epoch.
BATCHES_PER_EPOCH = 4

TINY_DATASET = '''\
"""A deterministic synthetic data set: noise images whose class is where the bright square is."""

import torch
from torch.utils.data import Dataset


class TinyDataset(Dataset):
    def __init__(self, size: int = 64, seed: int = 0, classes: int = 3):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (size,), generator=generator)
        self.images = torch.rand(size, 1, 32, 32, generator=generator) * 0.5 - 1
        for index, label in enumerate(self.labels.tolist()):
            self.images[index, 0, 4 + 8 * label : 12 + 8 * label, 4:12] += 1.5

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]
'''

FLAKY_COMMAND = '''\
"""A command that raises on its third run (for tests of on_error)."""

import attrs

from deepleaps.compiler import Kind
from deepleaps.runtime import Command, command


@command
class FailOnThirdRun(Command):
    name = "FailOnThirdRun"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        at: int = 3

    def run(self, ctx):
        if ctx.counters(self.node.name).total_step == self.args.at:
            raise RuntimeError(f"failing on purpose at run {self.args.at}")
'''

TINY_TRAINER = {
    "container": "src.trainer.ExampleContainer.ExampleContainer",
    "seed": 0,
    "device": "cpu",
    "model": {"class": "src.model.SimpleConv.SimpleConv", "args": {"classes": 3, "width": 4}},
    "optimizer": {"name": "Adam", "lr": 0.01},
    "loss": {"name": "CrossEntropyLoss"},
    "data": {
        "train": {
            "dataset": {"class": "src.tiny.TinyDataset", "args": {"size": 16 * BATCHES_PER_EPOCH, "seed": 1}},
            "loader": {"batch_size": 16, "shuffle": True, "num_workers": 0},
        },
        "valid": {
            "dataset": {"class": "src.tiny.TinyDataset", "args": {"size": 32, "seed": 2}},
            "loader": {"batch_size": 32, "shuffle": False},
        },
    },
}

TRAINER_CONFIG = "resource/configs/trainer/Tiny.yaml"


def make_small_workspace(directory: Path) -> Path:
    """The example workspace in ``directory`` plus the tiny data set, model and ``tiny.yaml``."""
    make_workspace(directory)
    (directory / "src" / "tiny.py").write_text(TINY_DATASET, encoding="utf-8")
    (directory / "src" / "ipc" / "FlakyCommand.py").write_text(FLAKY_COMMAND, encoding="utf-8")
    (directory / TRAINER_CONFIG).write_text(yaml.safe_dump(TINY_TRAINER, sort_keys=False), encoding="utf-8")
    write_command_file(directory, "tiny.yaml")
    return directory


def write_command_file(
    workspace: Path,
    name: str,
    *,
    epochs: int = 2,
    program: str | None = None,
    define: Mapping[str, Mapping[str, Any]] | None = None,
    modules: tuple[str, ...] = (),
) -> str:
    """A command file derived from the workspace's ``default.yaml``; its path relative to the workspace.

    The copy trains on the tiny data set for ``epochs`` steps of TRAINING_LOADER,
    logs metrics every two batches, opens its control socket on any free port,
    and may replace the program or add DEFINE entries and command modules.
    """
    default = yaml.safe_load((workspace / "resource/configs/default.yaml").read_text(encoding="utf-8"))
    config = copy.deepcopy(default)
    defines = config["DEFINE"]
    defines["TRAINER_CONTAINER_LOAD"]["args"] = TRAINER_CONFIG
    defines["TRAINING_LOADER"]["repeat"] = epochs
    defines["TRAINING_BATCH"]["args"] = {**defines["TRAINING_BATCH"].get("args", {}), "progress": False}
    defines["LOG_METRICS"]["run_cycle"] = "TRAINING_BATCH.step:2"
    defines.update(copy.deepcopy(dict(define or {})))
    if program is not None:
        config["DEFAULT"] = [program]
    if modules:
        config["ADD_COMMAND_MODULE"] = [*config.get("ADD_COMMAND_MODULE", []), *modules]
    config["COMMAND_CONTROLLER"] = {"ipc_host": "127.0.0.1", "ipc_port": 0}
    path = Path("resource/configs") / name
    (workspace / path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return str(path)


def deepleaps_command() -> list[str]:
    """The ``deepleaps`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "deepleaps"
    if script.is_file():
        return [str(script)]
    found = shutil.which("deepleaps")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from deepleaps.cli import main; sys.exit(main())"]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # a tiny model: more threads only add contention
    return env


def parent_pid(pid: int | None) -> int | None:
    """The parent of process ``pid`` (None if there is no such process): a training that
    ``--nproc-per-node`` launched serves from rank 0, a child of the launcher."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def run_deepleaps(workspace: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``deepleaps ARGS`` in ``workspace``; fails the test with its output if it hangs."""
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


def start_deepleaps(workspace: Path, *args: str) -> subprocess.Popen:
    """``deepleaps ARGS`` in ``workspace``, in the background."""
    return subprocess.Popen(
        [*deepleaps_command(), *args],
        cwd=workspace,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_directories(workspace: Path, name: str) -> list[Path]:
    """The run directories of ``RUN.name`` ``name``, oldest first."""
    folder = workspace / "resource" / "output" / name
    return sorted(path for path in folder.glob("run-*") if path.is_dir())


# ---- checkpoints -----------------------------------------------------------------------------------


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("*.pt"))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def model_of(path: Path) -> dict[str, torch.Tensor]:
    return load(path)["modules"]["MODEL"]


def assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"tensors differ: {different}"


def describe(result: subprocess.CompletedProcess) -> str:
    return textwrap.indent(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}", "  ")


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory) -> Path:
    """One small workspace per test module (each test uses its own ``--name``)."""
    return make_small_workspace(tmp_path_factory.mktemp("workspace"))
