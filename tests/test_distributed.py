"""Distributed runs: two processes on the CPU (gloo) training the small example workspace.

Each launch costs about 10 s, so a few runs carry every check: a live run steered over the
control channel (changes, a refusal, a pause longer than the collective timeout, STOP),
resumed with two processes and with one; a plain ``torchrun main.py`` run, the reference a
run stopped inside an epoch and resumed must equal bit for bit; a rank killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from control_fixtures import THROTTLE_COMMAND, Training, wait_for
from workspace_fixtures import (
    assert_same_tensors,
    checkpoints,
    describe,
    environment,
    load,
    make_small_workspace,
    parent_pid,
    run_deepleaps,
    run_directories,
    start_deepleaps,
    write_command_file,
)

from deepleaps.distributed.launch import Launch

#: A safe point inside epoch 2 of a two-process run (two batches an epoch on each rank).
INSIDE_EPOCH = {"node": "TRAINING_BATCH", "counters": {"step": 1, "total_step": 3, "epoch": 2}}
EPOCHS = 3
PROGRAM = """\
$root(
    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
        $MAIN_MODEL_LOAD -> $TRAINING_BATCH( $TRAINING_STEP -> $LOG_METRICS -> $THROTTLE )
            -> $VALIDATION -> MAIN_MODEL_SAVE
    )
)
"""


def reloaded_model(text: str) -> str:
    """The example's model with a correction layer that each rank initialises from a random
    state of its own: only rank 0's initial weights, broadcast, keep the ranks equal."""
    text = text.replace("from torch import nn", "import os\n\nimport torch\nfrom torch import nn")
    layer = """
        with torch.random.fork_rng():
            torch.manual_seed(100 + int(os.environ.get("RANK", "0")))
            self.correction = nn.Linear(classes, classes)
"""
    text = text.replace("classes)\n\n    def forward", "classes)\n" + layer + "\n    def forward")
    forward = "return self.head(self.features(images).flatten(1))"
    assert forward in text and "self.correction" in text
    corrected = f"logits = {forward.removeprefix('return ')}\n        return logits + 0.1 * self.correction(logits)"
    return text.replace(forward, corrected)


FREEZE_COMMAND = '''\
"""Stops a part of the model from training (what a user's command may do while it trains)."""

import attrs

from deepleaps.compiler import Kind
from deepleaps.distributed.ddp import unwrap
from deepleaps.runtime import Command, command


@command
class FreezeCommand(Command):
    name = "FreezeCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        part: str = "features"

    def run(self, ctx):
        getattr(unwrap(ctx.container.model), self.args.part).requires_grad_(False)
'''
APPLIED = re.compile(r"^\[rank (\d)\] applied patch (\d+) (\w+) at (\w+) (.*)$", re.MULTILINE)


# ---- without processes -----------------------------------------------------------------


def test_one_node_is_a_standalone_rendezvous():
    assert Launch(2).arguments() == ["--nproc-per-node", "2", "--standalone"]


def test_several_nodes_meet_at_their_endpoint():
    launch = Launch(4, "2", node_rank=1, rdzv_endpoint="node0:29400", rdzv_id="job7")
    assert launch.arguments() == [
        *("--nproc-per-node", "4", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "node0:29400"),
        *("--rdzv-id", "job7", "--node-rank", "1"),
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", *launch.arguments()]
    assert launch.command(["--config", "x.yaml"]) == [*launcher, "-m", "deepleaps", "run", "--config", "x.yaml"]


def test_several_nodes_without_an_endpoint_are_refused():
    with pytest.raises(ValueError, match="--rdzv-endpoint"):
        Launch(2, "2").arguments()


# ---- two processes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    directory = make_small_workspace(tmp_path_factory.mktemp("distributed"))
    (directory / "src" / "ipc" / "Throttle.py").write_text(THROTTLE_COMMAND, encoding="utf-8")
    (directory / "src" / "ipc" / "Freeze.py").write_text(FREEZE_COMMAND, encoding="utf-8")
    return directory


def command_file(workspace: Path, name: str, *, epochs: int, throttle: float = 0.0) -> str:
    """The small workspace's command file with a throttled step, metrics every batch and a
    checkpoint every epoch, serving on a free port with a token of its own."""
    define = {
        "THROTTLE": {"command": "ThrottleCommand", "args": {"seconds": throttle}},
        "LOG_METRICS": {"command": "LogMetricsCommand", "args": {"tensorboard": False}},
    }
    modules = ("src.ipc.Throttle", "src.ipc.Freeze")
    path = write_command_file(workspace, f"{name}.yaml", epochs=epochs, program=PROGRAM, define=define, modules=modules)
    config = yaml.safe_load((workspace / path).read_text(encoding="utf-8"))
    config["DEFINE"]["LOG_METRICS"].pop("run_cycle", None)
    config["COMMAND_CONTROLLER"]["token_file"] = f".deepleaps/{name}/control.token"
    config["RUN"]["name"] = name
    (workspace / path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class TwoProcesses(Training):
    """``deepleaps run --nproc-per-node 2``: the launcher is the process; rank 0, its child, serves."""

    def __init__(self, workspace: Path, name: str, *args: str, epochs: int = 1000, throttle: float = 0.05):
        super().__init__(workspace, name, args=["--nproc-per-node", "2", *args])
        self.config = command_file(workspace, name, epochs=epochs, throttle=throttle)
        self.info_path = workspace / ".deepleaps" / name / "control.json"

    def _serves(self, pid: int | None) -> bool:
        return parent_pid(pid) == self.process.pid


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid:
            children.append(int(entry.name))
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def applied(stderr: str) -> dict[int, list[tuple[int, str, str, str]]]:
    """Per rank, the patches it applied and where: (id, verb, node, counters)."""
    ranks: dict[int, list[tuple[int, str, str, str]]] = {}
    for rank, patch, verb, node, counters in APPLIED.findall(stderr):
        ranks.setdefault(int(rank), []).append((int(patch), verb, node, counters))
    return ranks


@pytest.fixture(scope="module")
def live(workspace: Path) -> dict:
    """A two-process run steered live, to its STOP; what the tests look at afterwards."""
    name = "live"
    training = TwoProcesses(workspace, name, "--collective-timeout", "5")
    try:
        training.start()
        replies = {"add": training.send("ADD", '$TRAINING_BATCH( PRINT_LOSS[run_cycle="TRAINING_BATCH.step:1"] )')}
        replies["refused"] = training.send("ADD", "$TRAINING_BATCH( *PrintCommand[content= )")
        replies["set"] = training.send("SET", "optimizer.lr 0.001")
        replies["bad_set"] = training.send("SET", "optimizer.lr -1")
        replies["freeze"] = training.send("ADD", "$TRAINING_BATCH( *FreezeCommand )")
        model = workspace / "src" / "model" / "SimpleConv.py"
        original = model.read_text(encoding="utf-8")
        model.write_text(reloaded_model(original), encoding="utf-8")
        try:
            replies["reload"] = training.send("RELOAD_MODULE", "src.model.SimpleConv")
        finally:
            model.write_text(original, encoding="utf-8")
        replies["pause"] = training.send("PAUSE")
        paused_at = training.last_logged_step()
        time.sleep(8)  # longer than the collective timeout (5 s)
        held_at = training.last_logged_step()
        replies["resume"] = training.send("RESUME")
        training.wait_logged(held_at + 4)
        replies["stop"] = training.send("STOP")
        status = training.wait_exit()
        return {
            "training": training,
            "replies": replies,
            "status": status,
            "paused_at": paused_at,
            "held_at": held_at,
            "stderr": training.stderr(),
            "stdout": training.stdout(),
            "run_dir": training.run_dir,
            "config": training.config,
        }
    finally:
        training.kill()


@pytest.mark.slow
def test_every_change_is_applied_by_every_rank_at_the_same_step(workspace: Path, live: dict):
    training, replies = live["training"], live["replies"]
    assert live["status"] == 0, training.describe()
    for verb in ("add", "set", "freeze", "reload", "pause", "resume", "stop"):
        assert replies[verb]["ok"], replies[verb]
    assert "tried on the last batch" in replies["reload"]["message"]
    assert run_directories(workspace, "live") == [live["run_dir"]]
    journal = training.journal()
    assert [entry["verb"] for entry in journal] == ["ADD", "SET", "ADD", "RELOAD_MODULE", "PAUSE", "RESUME", "STOP"]
    assert len({entry["id"] for entry in journal}) == len(journal)
    ranks = applied(live["stderr"])
    assert sorted(ranks) == [0, 1]
    assert ranks[0] == ranks[1], live["stderr"]
    expected = [
        (entry["id"], entry["verb"], entry["point"]["node"], counters(entry["point"]["counters"])) for entry in journal
    ]
    assert ranks[0] == expected
    assert "the weights are the same on all 2 ranks" in live["stderr"]
    assert re.search(r"loss at step \d+: \d", live["stdout"]), "PRINT_LOSS never ran"


def counters(values: dict) -> str:
    return " ".join(f"{key}={values[key]}" for key in ("step", "total_step", "epoch"))


@pytest.mark.slow
def test_the_loss_curve_goes_on_through_the_changes(live: dict):
    rows = live["training"].metrics()
    steps = [int(row["total_step"]) for row in rows]
    assert steps == list(range(1, len(steps) + 1)), "a batch is missing from metrics.csv"
    losses = [float(row["loss"]) for row in rows]
    assert all(loss == loss and loss < 10 for loss in losses)  # finite, no divergence
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert float(rows[-1]["lr"]) == 0.001


@pytest.mark.slow
def test_a_change_refused_on_rank_0_reaches_no_rank(live: dict):
    replies = live["replies"]
    assert not replies["refused"]["ok"] and not replies["bad_set"]["ok"]
    verbs = [verb for _, verb, _, _ in applied(live["stderr"])[1]]
    assert verbs.count("ADD") == 2 and verbs.count("SET") == 1


@pytest.mark.slow
def test_a_pause_longer_than_the_collective_timeout_holds_every_rank(live: dict):
    assert live["held_at"] - live["paused_at"] <= 1, "the run went on while paused"
    assert live["training"].last_logged_step() >= live["held_at"] + 4


def carried_over(checkpoint: dict) -> None:
    """The live run's changes are in ``checkpoint``: the learning rate, the reloaded model, the added node."""
    assert checkpoint["modules"]["OPTIMIZER"]["param_groups"][0]["lr"] == 0.001
    assert "correction.weight" in checkpoint["modules"]["MODEL"], "the reloaded model did not carry over"
    assert "LossPrintCommand" in json.dumps(checkpoint["control"]["program"]), "the added node did not carry over"


@pytest.mark.slow
def test_resume_after_stop_with_two_processes_then_with_one(workspace: Path, live: dict):
    """Resumed with two processes and stopped by a SIGTERM to the launcher (both ranks stop at
    the same step, after a checkpoint), then resumed with one process to the end."""
    run_dir, config = live["run_dir"], live["config"]
    stopped = load(checkpoints(run_dir)[-1])
    assert len(stopped["rng_ranks"]) == 2
    logged = len(live["training"].metrics())
    process = start_deepleaps(
        workspace, "run", "--nproc-per-node", "2", "--config", config, "--mode", "resume", "--no-server"
    )
    try:
        wait_for(lambda: len(live["training"].metrics()) >= logged + 6, "the resumed run to train", timeout=60)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    ranks = applied(stderr)
    entry = live["training"].journal()[-1]
    assert (entry["verb"], entry["origin"]) == ("STOP", "signal")
    node = entry["point"]["node"]
    assert ranks[0][-1] == ranks[1][-1] == (entry["id"], "STOP", node, counters(entry["point"]["counters"]))
    signalled = load(checkpoints(run_dir)[-1])
    assert signalled["states"][node] == {**signalled["states"][node], **entry["point"]["counters"]}
    assert signalled["states"]["TRAINING_BATCH"]["total_step"] > stopped["states"]["TRAINING_BATCH"]["total_step"]
    assert len(signalled["rng_ranks"]) == 2
    carried_over(signalled)

    epochs = signalled["states"]["TRAINING_LOADER"]["total_step"]
    result = run_deepleaps(
        workspace,
        *("run", "--config", config, "--mode", "resume", "--no-server"),
        *("--set", f"TRAINING_LOADER.repeat={epochs + 2}", "--set", "THROTTLE.seconds=0"),
    )
    assert result.returncode == 0, describe(result)
    assert run_directories(workspace, "live") == [run_dir]
    ended = load(checkpoints(run_dir)[-1])
    assert ended["states"]["TRAINING_LOADER"]["step"] == epochs + 2
    carried_over(ended)
    rows = live["training"].metrics()
    assert [int(row["total_step"]) for row in rows] == list(range(1, len(rows) + 1))


@pytest.fixture(scope="module")
def reference(workspace: Path) -> Path:
    """``torchrun --nproc-per-node 2 main.py`` with the small command file as default.yaml: its last checkpoint."""
    shutil.copyfile(
        workspace / command_file(workspace, "plain", epochs=EPOCHS), workspace / "resource/configs/default.yaml"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--standalone", "main.py"],
        cwd=workspace,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, describe(result)
    (run_dir,) = run_directories(workspace, "plain")
    assert "the weights are the same on all 2 ranks" in result.stderr
    assert len(checkpoints(run_dir)) == EPOCHS
    return checkpoints(run_dir)[-1]


@pytest.mark.slow
def test_plain_torchrun_of_main_py_is_one_run(workspace: Path, reference: Path):
    run_dir = reference.parent.parent
    assert (run_dir / "run.log").is_file() and (run_dir / "metrics.csv").is_file()
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * EPOCHS  # rank 0 alone logs its two batches an epoch
    assert not (workspace / "resource/output/plain/run-0002").exists()


@pytest.mark.slow
def test_stopped_inside_an_epoch_and_resumed_equals_the_uninterrupted_run(workspace: Path, reference: Path):
    config = command_file(workspace, "stopped", epochs=EPOCHS)
    entry = {"id": 1, "verb": "STOP", "text": "", "point": INSIDE_EPOCH}
    replay = workspace / "stop.jsonl"
    replay.write_text(json.dumps(entry) + "\n", encoding="utf-8")
    common = ("run", "--nproc-per-node", "2", "--config", config, "--no-server")
    first = run_deepleaps(workspace, *common, "--replay", str(replay))
    assert first.returncode == 0, describe(first)
    (run_dir,) = run_directories(workspace, "stopped")
    stopped = load(checkpoints(run_dir)[-1])
    assert stopped["states"]["TRAINING_BATCH"]["total_step"] == INSIDE_EPOCH["counters"]["total_step"]
    second = run_deepleaps(workspace, *common, "--mode", "resume")
    assert second.returncode == 0, describe(second)
    resumed, expected = load(checkpoints(run_dir)[-1]), load(reference)
    assert_same_tensors(resumed["modules"]["MODEL"], expected["modules"]["MODEL"])
    assert resumed["states"]["TRAINING_BATCH"] == expected["states"]["TRAINING_BATCH"]


@pytest.mark.slow
def test_a_rank_killed_ends_the_run_within_60_s_leaving_no_process(workspace: Path):
    training = TwoProcesses(workspace, "killed")
    try:
        training.start()
        ranks = _descendants(training.process.pid)
        rank1 = [pid for pid in ranks if b"RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes()]
        assert len(rank1) == 1, ranks
        os.kill(rank1[0], signal.SIGKILL)
        started = time.monotonic()
        status = training.wait_exit(timeout=60)
        assert status != 0
        assert time.monotonic() - started < 60
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in ranks), "every rank to be gone", timeout=5)
    finally:
        training.kill()


@pytest.mark.slow
def test_a_change_that_fails_on_another_rank_ends_the_run_on_every_rank(workspace: Path):
    training = TwoProcesses(workspace, "diverging")
    model = workspace / "src" / "model" / "SimpleConv.py"
    original = model.read_text(encoding="utf-8")
    failing = 'import os\n\nif os.environ.get("RANK") == "1":\n    raise RuntimeError("not on rank 1")\n\n'
    try:
        training.start()
        model.write_text(failing + original, encoding="utf-8")
        reply = training.send("RELOAD_MODULE", "src.model.SimpleConv")
        status = training.wait_exit(timeout=60)
    finally:
        model.write_text(original, encoding="utf-8")
        training.kill()
    assert reply["ok"], reply  # applied on rank 0, and journaled there
    assert status != 0
    stderr = training.stderr()
    assert re.search(r"patch \d+, applied on rank 0, failed on rank 1: patch \d+ \(RELOAD_MODULE\)", stderr)
    assert "not on rank 1" in stderr
    assert "the run ends on every rank" in stderr
