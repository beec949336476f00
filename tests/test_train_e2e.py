"""End to end: ``deepleaps init`` and ``deepleaps run`` in a real workspace, with real torch and files.

The workspace (tests/workspace_fixtures.py) trains a narrow model on a tiny
synthetic data set, four batches an epoch, so every run takes seconds. Each
test uses its own ``--name``, so its runs land in their own folder.
"""

from __future__ import annotations

import csv
import logging
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from workspace_fixtures import (  # noqa: F401  (small_workspace is a fixture)
    BATCHES_PER_EPOCH,
    TINY_TRAINER,
    assert_same_tensors,
    checkpoints,
    describe,
    load,
    model_of,
    run_deepleaps,
    run_directories,
    small_workspace,
    start_deepleaps,
    write_command_file,
)

import deepleaps.train.commands  # noqa: F401  (registers the training commands)
from deepleaps.train.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

#: The seed's workspace layout (deep-leaps README, "make workspace").
SEED_TREE = (
    "exampleDataset/0000.jpg",
    "exampleDataset/0001.jpg",
    "exampleDataset/0002.jpg",
    "resource/output/README.md",
    "resource/configs/dataloader/exampleDataLoader.yaml",
    "resource/configs/model/SimpleLayerModel.yaml",
    "resource/configs/dataset/Example.yaml",
    "resource/configs/command/default_runnable_command.yaml",
    "resource/configs/trainer/ExampleContainer.yaml",
    "resource/configs/default.yaml",
    "src/dataloader/Exampledataset.py",
    "src/dataloader/TensorTypes.py",
    "src/dataloader/transforms.py",
    "src/model/SimpleConv.py",
    "src/trainer/ExampleContainer.py",
    "src/ipc/CustomCommand.py",
    "client.py",
    "main.py",
)

FLAKY_PATH = "root/TRAINING_LOADER/TRAINING_BATCH/FLAKY"


def assert_seed_layout(workspace: Path) -> None:
    missing = [path for path in SEED_TREE if not (workspace / path).is_file()]
    assert not missing, f"missing from {workspace}: {missing}"
    assert len(list((workspace / "exampleDataset").glob("*.jpg"))) > 3


def assert_checkpoint(path: Path) -> dict:
    """``path`` loads and holds what docs/design.md §9 promises."""
    payload = load(path)
    assert {"modules", "states", "rng", "position", "program"} <= payload.keys()
    assert {"MODEL", "OPTIMIZER"} <= payload["modules"].keys()
    assert all(isinstance(value, torch.Tensor) for value in payload["modules"]["MODEL"].values())
    assert "state" in payload["modules"]["OPTIMIZER"]
    assert "torch" in payload["rng"]
    assert "$TRAINING_LOADER" in payload["program"]
    return payload


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert all(None not in row for row in rows), f"{path.name} has rows longer than its header"
    return rows


def default_program(workspace: Path) -> str:
    import yaml

    return yaml.safe_load((workspace / "resource/configs/default.yaml").read_text())["DEFAULT"][0]


@pytest.fixture(scope="module")
def baseline(small_workspace: Path) -> Path:  # noqa: F811
    """A run of two epochs with seed 0: the reference the other runs are compared with."""
    config = write_command_file(small_workspace, "two_epochs.yaml", epochs=2)
    result = run_deepleaps(small_workspace, "run", "--config", config, "--name", "baseline")
    assert result.returncode == 0, describe(result)
    (run_dir,) = run_directories(small_workspace, "baseline")
    return run_dir


# ---- (a) deepleaps init -------------------------------------------------------------------------


def test_init_creates_the_seed_layout(tmp_path: Path):
    target = tmp_path / "fresh"
    result = run_deepleaps(tmp_path, "init", str(target), timeout=60)
    assert result.returncode == 0, describe(result)
    assert_seed_layout(target)
    # The seed's command file compiles as it is in the new workspace, its classes the workspace's own.
    compiled = run_deepleaps(target, "compile", "resource/configs/default.yaml", timeout=60)
    assert compiled.returncode == 0, describe(compiled)
    assert all(name in compiled.stdout for name in ("TRAINER_CONTAINER_LOAD", "TRAINING_BATCH", "MAIN_MODEL_SAVE"))


def test_app_make_workspace_creates_the_seed_layout(tmp_path: Path):
    from deepleaps.app.app import App

    assert App.make_workspace(tmp_path / "embedded") == tmp_path / "embedded"
    assert_seed_layout(tmp_path / "embedded")


# ---- (b) a training run and its directory ----------------------------------------------------------


def test_run_writes_the_run_directory(baseline: Path):
    for name in ("run.log", "program.dl", "command.yaml", "metrics.csv", "epochs.csv", "ckp.meta"):
        assert (baseline / name).is_file(), f"{name} missing from {baseline}"
    assert "$TRAINING_LOADER" in (baseline / "program.dl").read_text()

    epochs = csv_rows(baseline / "epochs.csv")
    assert [row["step"] for row in epochs] == ["1", "2"]
    assert all(0.0 <= float(row["valid_accuracy"]) <= 1.0 for row in epochs)
    metrics = csv_rows(baseline / "metrics.csv")
    assert [row["total_step"] for row in metrics] == [str(step) for step in range(2, 2 * BATCHES_PER_EPOCH + 1, 2)]

    meta = CheckpointStore(baseline).meta()
    files = checkpoints(baseline)
    assert [path.name for path in files] == ["000001.pt", "000002.pt"]
    assert meta["latest"] == "000002"
    assert [entry["file"] for entry in meta["checkpoints"]] == ["000001.pt", "000002.pt"]
    assert CheckpointStore(baseline).latest().path == baseline / "checkpoints" / "000002.pt"
    for epoch, path in enumerate(files, start=1):
        payload = assert_checkpoint(path)
        assert payload["position"] == ["root", "TRAINING_LOADER", "MAIN_MODEL_SAVE"]
        assert payload["states"]["TRAINING_LOADER"]["step"] == epoch
        assert payload["states"]["TRAINING_BATCH"]["total_step"] == epoch * BATCHES_PER_EPOCH
    assert not any(torch.equal(a, b) for a, b in zip(model_of(files[0]).values(), model_of(files[1]).values()))


# ---- (c) determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights(small_workspace: Path, baseline: Path):  # noqa: F811
    config = write_command_file(small_workspace, "two_epochs.yaml", epochs=2)
    result = run_deepleaps(small_workspace, "run", "--config", config, "--name", "again")
    assert result.returncode == 0, describe(result)
    (again,) = run_directories(small_workspace, "again")
    assert_same_tensors(model_of(checkpoints(again)[-1]), model_of(checkpoints(baseline)[-1]))


# ---- (d) resume ----------------------------------------------------------------------------------------


def test_one_epoch_then_resume_equals_two_epochs(small_workspace: Path, baseline: Path):  # noqa: F811
    one = write_command_file(small_workspace, "one_epoch.yaml", epochs=1)
    first = run_deepleaps(small_workspace, "run", "--config", one, "--name", "resumed")
    assert first.returncode == 0, describe(first)
    (run_dir,) = run_directories(small_workspace, "resumed")
    assert [path.name for path in checkpoints(run_dir)] == ["000001.pt"]

    # The resumed run goes on with the program its checkpoint kept: --set raises its epochs.
    second = run_deepleaps(
        small_workspace, "run", "--config", one, "--name", "resumed", "--mode", "resume",
        "--set", "TRAINING_LOADER.repeat=2",
    )  # fmt: skip
    assert second.returncode == 0, describe(second)
    assert run_directories(small_workspace, "resumed") == [run_dir], "resume must reuse the run directory"
    assert [path.name for path in checkpoints(run_dir)] == ["000001.pt", "000002.pt"]
    assert "resuming from checkpoint 000001" in (run_dir / "run.log").read_text()
    assert [row["step"] for row in csv_rows(run_dir / "epochs.csv")] == ["1", "2"]

    resumed, reference = load(checkpoints(run_dir)[-1]), load(checkpoints(baseline)[-1])
    assert_same_tensors(resumed["modules"]["MODEL"], reference["modules"]["MODEL"])
    # Counters match too, except that the one-shot setup ran once more, when the run resumed.
    setup = {"TRAINER_CONTAINER_LOAD", "MAIN_MODEL_LOAD"}
    assert {name: state for name, state in resumed["states"].items() if name not in setup} == {
        name: state for name, state in reference["states"].items() if name not in setup
    }


def _inner_save_config(workspace: Path, name: str, fail_at: int) -> str:
    """The example program with a checkpoint every 2 batches inside the epoch, and a node
    that fails at batch ``fail_at`` to cut the run short."""
    program = default_program(workspace)
    inner = program.replace("$TRAINING_STEP -> $LOG_METRICS", "$TRAINING_STEP -> $FLAKY -> $LOG_METRICS -> $INNER_SAVE")
    assert inner != program, "the example program changed: update this test"
    save = {"command": "ModuleSaveClass", "required": ["MODEL", "OPTIMIZER"], "base_path": "$base"}
    return write_command_file(
        workspace,
        name,
        program=inner,
        define={
            "FLAKY": {"command": "FailOnThirdRun", "args": {"at": fail_at}},
            "INNER_SAVE": {**save, "run_cycle": "TRAINING_BATCH.step:2"},
        },
        modules=("src.ipc.FlakyCommand",),
    )


def test_resume_from_a_checkpoint_inside_an_epoch_equals_an_uninterrupted_run(small_workspace: Path):  # noqa: F811
    # Batch 7 is the 3rd of epoch 2: the latest checkpoint is then the one after its 2nd batch.
    cut = _inner_save_config(small_workspace, "inner_cut.yaml", fail_at=BATCHES_PER_EPOCH + 3)
    whole = _inner_save_config(small_workspace, "inner_whole.yaml", fail_at=10_000)
    reference = run_deepleaps(small_workspace, "run", "--config", whole, "--name", "inner_reference")
    assert reference.returncode == 0, describe(reference)
    first = run_deepleaps(small_workspace, "run", "--config", cut, "--name", "inner")
    assert first.returncode == 1, describe(first)
    (run_dir,) = run_directories(small_workspace, "inner")
    latest = load(checkpoints(run_dir)[-1])
    assert latest["position"] == ["root", "TRAINING_LOADER", "TRAINING_BATCH", "INNER_SAVE"]
    assert latest["states"]["TRAINING_BATCH"]["step"] == 2

    second = run_deepleaps(
        small_workspace, "run", "--config", cut, "--name", "inner", "--mode", "resume", "--set", "FLAKY.at=10000"
    )
    assert second.returncode == 0, describe(second)
    (reference_dir,) = run_directories(small_workspace, "inner_reference")
    resumed, expected = load(checkpoints(run_dir)[-1]), load(checkpoints(reference_dir)[-1])
    assert_same_tensors(resumed["modules"]["MODEL"], expected["modules"]["MODEL"])
    assert resumed["states"]["TRAINING_BATCH"] == expected["states"]["TRAINING_BATCH"]


# ---- (e) a failing command ----------------------------------------------------------------------------


def _flaky_config(workspace: Path, name: str, **options) -> str:
    program = default_program(workspace)
    flaky = program.replace("$TRAINING_STEP -> $LOG_METRICS", "$TRAINING_STEP -> $FLAKY -> $LOG_METRICS")
    assert flaky != program, "the example program changed: update this test"
    return write_command_file(
        workspace,
        name,
        program=flaky,
        define={"FLAKY": {"command": "FailOnThirdRun", **options}},
        modules=("src.ipc.FlakyCommand",),
    )


def test_a_failing_command_stops_the_run_with_its_node_path(small_workspace: Path):  # noqa: F811
    config = _flaky_config(small_workspace, "flaky.yaml")
    result = run_deepleaps(small_workspace, "run", "--config", config, "--name", "flaky")
    assert result.returncode == 1, describe(result)
    assert FLAKY_PATH in result.stderr
    assert "failing on purpose at run 3" in result.stderr
    assert "Traceback" not in result.stderr
    (run_dir,) = run_directories(small_workspace, "flaky")
    assert checkpoints(run_dir) == []


def test_a_mistake_in_the_trainer_configuration_is_reported_once_without_a_traceback(small_workspace: Path):  # noqa: F811
    trainer, misspelt = "resource/configs/trainer/Misspelt.yaml", {**TINY_TRAINER, "optimizer": {"name": "Adamm"}}
    (small_workspace / trainer).write_text(yaml.safe_dump(misspelt), encoding="utf-8")
    loader = {"command": "TrainerContainerLoaderCommand", "args": trainer, "finish": True}
    config = write_command_file(small_workspace, "misspelt.yaml", define={"TRAINER_CONTAINER_LOAD": loader})
    result = run_deepleaps(small_workspace, "run", "--config", config, "--name", "misspelt")
    assert result.returncode == 1, describe(result)
    message = "node root/TRAINER_CONTAINER_LOAD failed: cannot find 'Adamm': module 'torch.optim' has no 'Adamm'"
    assert result.stderr.splitlines()[-1] == f"error: {message}"
    (run_dir,) = run_directories(small_workspace, "misspelt")
    log = (run_dir / "run.log").read_text()
    assert f"ERROR deepleaps: {message}\n" in log
    assert "Traceback" not in log


def test_on_error_skip_lets_the_run_finish(small_workspace: Path):  # noqa: F811
    config = _flaky_config(small_workspace, "flaky_skip.yaml", on_error="skip")
    result = run_deepleaps(small_workspace, "run", "--config", config, "--name", "flaky_skip")
    assert result.returncode == 0, describe(result)
    (run_dir,) = run_directories(small_workspace, "flaky_skip")
    assert [path.name for path in checkpoints(run_dir)] == ["000001.pt", "000002.pt"]
    log = (run_dir / "run.log").read_text()
    assert FLAKY_PATH in log and "failing on purpose at run 3" in log


# ---- (f) Ctrl-C ----------------------------------------------------------------------------------------


def test_sigint_finishes_the_step_and_exits_130(small_workspace: Path):  # noqa: F811
    config = write_command_file(small_workspace, "long.yaml", epochs=10_000)
    process = start_deepleaps(small_workspace, "run", "--config", config, "--name", "interrupted")
    try:
        deadline = time.monotonic() + 90
        meta = None
        while time.monotonic() < deadline and process.poll() is None:
            runs = run_directories(small_workspace, "interrupted")
            if runs and (runs[0] / "ckp.meta").is_file():
                meta = runs[0] / "ckp.meta"
                break
            time.sleep(0.05)
        assert meta is not None, f"no checkpoint before the deadline (exit {process.poll()})"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, f"exit {process.returncode}\n{stdout}\n{stderr}"
    assert "stopping after the current step" in stderr
    assert "Traceback" not in stderr

    run_dir = meta.parent
    files = checkpoints(run_dir)
    for path in files:
        assert_checkpoint(path)
    store = CheckpointStore(run_dir)
    assert store.latest().path.is_file()
    assert [entry["file"] for entry in store.meta()["checkpoints"]] == [path.name for path in files]
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "a temporary checkpoint file was left behind"
    # Every epoch that logged its metrics wrote its checkpoint, and the stop one more, at a safe point.
    assert len(files) == len(csv_rows(run_dir / "epochs.csv")) + 1
    assert load(files[-1])["position"][-1] in ("TRAINING_LOADER", "TRAINING_BATCH")


# ---- (g) the embedding API ------------------------------------------------------------------------------


@pytest.fixture
def isolated_imports(small_workspace: Path):  # noqa: F811
    """App puts the workspace on sys.path and imports its ``src`` package: undo that afterwards."""

    def forget_src():
        for module in [name for name in sys.modules if name == "src" or name.startswith("src.")]:
            del sys.modules[module]

    path, level = list(sys.path), logging.getLogger("deepleaps").level
    forget_src()
    yield
    forget_src()
    sys.path[:] = path
    logging.getLogger("deepleaps").setLevel(level)


def test_app_start_stop_join(small_workspace: Path, isolated_imports):  # noqa: F811
    from deepleaps.app.app import App

    config = write_command_file(small_workspace, "long.yaml", epochs=10_000)
    app = App(config, workspace=small_workspace, name="embedded")
    handle = app.start()
    try:
        deadline = time.monotonic() + 60
        while app.interpreter.states["TRAINING_BATCH"].total_step < 2 and time.monotonic() < deadline:
            assert handle.thread.is_alive(), f"the run ended early with status {handle.status}"
            time.sleep(0.02)
    finally:
        handle.stop()
        status = handle.join(timeout=60)
    assert not handle.thread.is_alive()
    assert status == 0
    directory = app.experiment.directory
    assert directory.is_dir()
    assert directory.parent == small_workspace / "resource" / "output" / "embedded"
    assert (directory / "run.log").is_file()
