"""Resume from every kind of checkpoint a run writes, and the run folders around it.

For the same seed, a run stopped and resumed ends with weights equal
(``torch.equal``) to an uninterrupted run. Stops land at a known safe point: a
journal replayed with ``--replay`` applies ``STOP`` there, or ``PAUSE`` to hold
the run while a test sends ``CHECKPOINT`` and kills it, or sends a signal.
(End-of-epoch and inside-an-epoch checkpoints written by ``ModuleSaveClass``
are covered in test_train_e2e.py.)
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from workspace_fixtures import (  # noqa: F401  (small_workspace is a fixture)
    BATCHES_PER_EPOCH,
    assert_same_tensors,
    checkpoints,
    describe,
    load,
    run_deepleaps,
    run_directories,
    small_workspace,
    start_deepleaps,
    write_command_file,
)

from deepleaps.control.client import Client, ControlError

pytestmark = pytest.mark.slow

EPOCHS = 3
#: TRAINING_LOADER's safe point before epoch 2: one step done.
BETWEEN_EPOCHS = {"node": "TRAINING_LOADER", "counters": {"step": 1, "total_step": 1, "epoch": 0}}
#: TRAINING_BATCH's safe point before the third batch of epoch 2.
INSIDE_EPOCH = {
    "node": "TRAINING_BATCH",
    "counters": {"step": 2, "total_step": BATCHES_PER_EPOCH + 2, "epoch": 2},
}
#: A plain graph around the step, which the compiler inlines into TRAINING_BATCH.
INLINED_PROGRAM = """\
$root(
    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
        $MAIN_MODEL_LOAD -> $TRAINING_BATCH( $STEP_GROUP( $TRAINING_STEP -> $LOG_METRICS ) )
            -> $VALIDATION -> $EPOCH_METRICS -> MAIN_MODEL_SAVE
    )
)
"""
#: STEP_GROUP's safe point in the third batch of epoch 2 (its counters before they move).
INLINED = {"node": "STEP_GROUP", "counters": {"step": 1, "total_step": BATCHES_PER_EPOCH + 2, "epoch": 0}}


@pytest.fixture(scope="module")
def configs(small_workspace: Path) -> dict[str, str]:  # noqa: F811
    define = {"STEP_GROUP": {"command": "Graph"}}
    return {
        "plain": write_command_file(small_workspace, "resume.yaml", epochs=EPOCHS),
        "inlined": write_command_file(
            small_workspace, "resume_inlined.yaml", epochs=EPOCHS, program=INLINED_PROGRAM, define=define
        ),
    }


@pytest.fixture(scope="module")
def reference(small_workspace: Path, configs: dict[str, str]) -> dict[str, Path]:  # noqa: F811
    """The uninterrupted runs: the last checkpoint of each program."""
    last = {}
    for program, config in configs.items():
        name = f"reference_{program}"
        result = run_deepleaps(small_workspace, "run", "--config", config, "--name", name)
        assert result.returncode == 0, describe(result)
        (run_dir,) = run_directories(small_workspace, name)
        last[program] = checkpoints(run_dir)[-1]
    return last


def journal(workspace: Path, name: str, verb: str, point: dict) -> str:
    """A one-entry journal that applies ``verb`` at ``point`` when replayed."""
    path = workspace / f"{name}.jsonl"
    path.write_text(json.dumps({"id": 1, "verb": verb, "text": "", "point": point}) + "\n", encoding="utf-8")
    return str(path)


def resume_and_compare(workspace: Path, config: str, name: str, reference: Path) -> None:
    """Resume run ``name`` to its end: its weights and counters are the uninterrupted run's."""
    (run_dir,) = run_directories(workspace, name)
    stopped_at = load(checkpoints(run_dir)[-1])
    result = run_deepleaps(workspace, "run", "--config", config, "--name", name, "--mode", "resume")
    assert result.returncode == 0, describe(result)
    assert run_directories(workspace, name) == [run_dir]
    resumed, expected = load(checkpoints(run_dir)[-1]), load(reference)
    assert resumed["states"]["TRAINING_LOADER"]["step"] == EPOCHS, "the resumed run did not reach the end"
    assert_same_tensors(resumed["modules"]["MODEL"], expected["modules"]["MODEL"])
    assert resumed["states"]["TRAINING_BATCH"] == expected["states"]["TRAINING_BATCH"]
    assert stopped_at["states"]["TRAINING_BATCH"]["total_step"] < expected["states"]["TRAINING_BATCH"]["total_step"]


@pytest.mark.parametrize(
    ("program", "point", "position"),
    [
        ("plain", BETWEEN_EPOCHS, ["root", "TRAINING_LOADER"]),
        ("plain", INSIDE_EPOCH, ["root", "TRAINING_LOADER", "TRAINING_BATCH"]),
        ("inlined", INLINED, ["root", "TRAINING_LOADER", "TRAINING_BATCH", "STEP_GROUP"]),
    ],
    ids=["between-epochs", "inside-epoch", "inlined-graph"],
)
def test_resume_after_stop(small_workspace, configs, reference, program, point, position):  # noqa: F811
    name = f"stop_{point['node'].lower()}"
    config = configs[program]
    replay = journal(small_workspace, name, "STOP", point)
    first = run_deepleaps(small_workspace, "run", "--config", config, "--name", name, "--replay", replay)
    assert first.returncode == 0, describe(first)
    (run_dir,) = run_directories(small_workspace, name)
    stopped = load(checkpoints(run_dir)[-1])
    assert stopped["position"] == position
    assert stopped["states"][point["node"]] == {**stopped["states"][point["node"]], **point["counters"]}
    resume_and_compare(small_workspace, config, name, reference[program])


def _paused(workspace: Path) -> bool:
    try:
        with Client(workspace=workspace, timeout=10) as client:
            return bool(client.send("STATUS")["data"]["paused"])
    except (ControlError, OSError):
        return False


@pytest.mark.parametrize("how", ["checkpoint-then-sigkill", "sigint", "sigterm"])
def test_resume_after_checkpoint_kill_or_signal(small_workspace, configs, reference, how):  # noqa: F811
    """Held by a replayed PAUSE inside epoch 2, the run is checkpointed and killed, or signalled."""
    name = f"live_{how.replace('-', '_')}"
    config = configs["plain"]
    replay = journal(small_workspace, name, "PAUSE", INSIDE_EPOCH)
    process = start_deepleaps(
        small_workspace, "run", "--port", "0", "--config", config, "--name", name, "--replay", replay
    )
    try:
        deadline = time.monotonic() + 90
        while not _paused(small_workspace):
            assert process.poll() is None, f"the run ended early: {process.communicate()}"
            assert time.monotonic() < deadline, "the run never paused"
            time.sleep(0.1)
        if how == "checkpoint-then-sigkill":
            with Client(workspace=small_workspace, timeout=30) as client:
                reply = client.send("CHECKPOINT")
            assert reply["ok"], reply
            process.kill()
            process.communicate(timeout=30)
        else:
            process.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
            assert process.returncode == 130, f"exit {process.returncode}\n{stdout}\n{stderr}"
            assert "Traceback" not in stderr
            assert re.search(r"stopped after checkpoint \d{6}; `deepleaps run --mode resume` goes on from it", stderr)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    (run_dir,) = run_directories(small_workspace, name)
    written = load(checkpoints(run_dir)[-1])
    assert written["position"] == ["root", "TRAINING_LOADER", "TRAINING_BATCH"]
    assert written["states"]["TRAINING_BATCH"]["total_step"] == INSIDE_EPOCH["counters"]["total_step"]
    resume_and_compare(small_workspace, config, name, reference["plain"])


# ---- finetuning, failed starts, --set ------------------------------------------------------------


def test_finetuning_loads_the_other_runs_latest_checkpoint(small_workspace, configs, reference):  # noqa: F811
    source = reference["plain"].parent.parent
    result = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "tuned", "--mode", "finetuning",
        "--from", str(source.relative_to(small_workspace)), "--set", "TRAINING_LOADER.repeat=1",
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    (run_dir,) = run_directories(small_workspace, "tuned")
    log = (run_dir / "run.log").read_text()
    assert f"loaded MODEL from {reference['plain']}" in log
    assert f"loaded OPTIMIZER from {reference['plain']}" in log
    assert [path.name for path in checkpoints(run_dir)] == ["000001.pt"]


def test_a_failed_start_says_why_and_resume_passes_it_over(small_workspace, configs):  # noqa: F811
    first = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "fallback", "--set", "TRAINING_LOADER.repeat=1"
    )
    assert first.returncode == 0, describe(first)
    broken = write_command_file(
        small_workspace,
        "broken.yaml",
        define={
            "TRAINER_CONTAINER_LOAD": {
                "command": "TrainerContainerLoaderCommand",
                "args": {"container": "src.trainer.ExampleContainer.NoSuch"},
            }
        },
    )
    failed = run_deepleaps(small_workspace, "run", "--config", broken, "--name", "fallback")
    assert failed.returncode == 1, describe(failed)
    assert "src.trainer.ExampleContainer.NoSuch" in failed.stderr and "Traceback" not in failed.stderr
    good, bad = run_directories(small_workspace, "fallback")
    assert "src.trainer.ExampleContainer.NoSuch" in (bad / "run.log").read_text()
    assert checkpoints(bad) == []

    resumed = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "fallback", "--mode", "resume"
    )
    assert resumed.returncode == 0, describe(resumed)
    assert f"resuming {good.name}, the newest run with a checkpoint ({bad.name}: none)" in resumed.stderr
    assert "resuming from checkpoint 000001" in (good / "run.log").read_text()
    assert run_directories(small_workspace, "fallback") == [good, bad]


def test_a_start_that_fails_after_its_run_directory_exists_is_logged_there(small_workspace, configs):  # noqa: F811
    first = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "corrupt", "--set", "TRAINING_LOADER.repeat=1"
    )
    assert first.returncode == 0, describe(first)
    (run_dir,) = run_directories(small_workspace, "corrupt")
    checkpoints(run_dir)[-1].write_bytes(b"not a checkpoint")
    result = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "corrupt", "--mode", "resume"
    )
    assert result.returncode == 1, describe(result)
    assert "error: the run could not start: " in result.stderr and "Traceback" not in result.stderr
    assert "the run could not start" in (run_dir / "run.log").read_text()


def test_set_overrides_a_definition_for_one_run(small_workspace, configs):  # noqa: F811
    result = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "set", "--set", "TRAINING_LOADER.repeat=1",
        "--set", f"TRAINING_BATCH.batch_size={16 * BATCHES_PER_EPOCH // 2}",
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    (run_dir,) = run_directories(small_workspace, "set")
    final = load(checkpoints(run_dir)[-1])
    assert final["states"]["TRAINING_LOADER"]["step"] == 1
    assert final["states"]["TRAINING_BATCH"]["total_step"] == 2, "batch_size was not overridden"

    wrong = run_deepleaps(
        small_workspace, "run", "--config", configs["plain"], "--name", "set", "--set", "TRAINING_LOADER.repeat=many"
    )
    assert wrong.returncode == 1
    assert wrong.stderr.splitlines()[-3:] == [
        "--set 1:1:24: error: 'repeat' must be an integer ≥ -1 (-1 = forever), got 'many'",
        "    TRAINING_LOADER.repeat=many",
        "                           ^~~~",
    ]
    assert run_directories(small_workspace, "set") == [run_dir], "a refused --set must not create a run directory"
    typo = run_deepleaps(small_workspace, "run", "--config", configs["plain"], "--set", "TRAINING_LOADR.repeat=1")
    assert typo.returncode == 1
    assert "no DEFINE entry 'TRAINING_LOADR'" in typo.stderr and "did you mean 'TRAINING_LOADER'" in typo.stderr
