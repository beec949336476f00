"""Hot code reload against real trainings (docs/reload.md): a command, the model and the
container reloaded live; refusals that leave the old code running; UNDO, replay, --watch-code.

Most tests share one endless training and put back every file they edit.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from control_fixtures import Training, batch_point, make_control_workspace, running, wait_for
from test_control_live import final_weights, replay_run, run_log

pytestmark = pytest.mark.slow

COMMAND = "src/ipc/CustomCommand.py"
MODEL = "src/model/SimpleConv.py"
CONTAINER = "src/trainer/ExampleContainer.py"
PRINT = 'print(f"{self.args.prefix} at step {step}: {ctx.container.last_loss:.4f}", flush=True)'
LAYER_END = "nn.MaxPool2d(2),\n        )"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_control_workspace(tmp_path_factory.mktemp("reload-live"))


@pytest.fixture(scope="module")
def live(workspace):
    with running(workspace, "reload-live", throttle=0.05) as training:
        yield training


@contextlib.contextmanager
def edited(workspace: Path, file: str, old: str, new: str) -> Iterator[Path]:
    """``file`` with ``old`` replaced by ``new`` (and nothing else), put back afterwards."""
    path = workspace / file
    original = path.read_text()
    assert original.count(old) == 1, f"{file} changed: update this test"
    path.write_text(original.replace(old, new))
    try:
        yield path
    finally:
        path.write_text(original)


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@contextlib.contextmanager
def printing(training: Training, prefix: str) -> Iterator[str]:
    """A LossPrintCommand node printing ``prefix`` at every batch, removed afterwards."""
    added = training.send("ADD", f'$TRAINING_BATCH( *LossPrintCommand[prefix="{prefix}"] )')
    assert added["ok"], added
    (name,) = [op["name"] for op in added["script"]["operations"] if op["op"] == "add_node"]
    try:
        yield name
    finally:
        assert training.send("REMOVE", name)["ok"]


def printed_steps(training: Training, pattern: str) -> list[int]:
    return [int(step) for step in re.findall(pattern, training.stdout())]


def test_an_edited_print_shows_from_the_next_batch_and_the_counters_go_on(live, workspace):
    new = PRINT.replace("at step {step}", "@ {step} (edited)")
    with printing(live, "p1") as name, edited(workspace, COMMAND, PRINT, new):
        wait_for(lambda: printed_steps(live, r"p1 at step (\d+)"), "the first print", on_fail=live.describe)
        reply = live.send("RELOAD_MODULE", "src.ipc.CustomCommand")
        assert reply["ok"] and reply["message"] == f"reloaded src.ipc.CustomCommand; rebuilt {name}", reply
        point = batch_point(reply["point"])
        wait_for(lambda: len(printed_steps(live, r"p1 @ (\d+) \(edited\)")) >= 3, "the edited print")
        before, after = printed_steps(live, r"p1 at step (\d+)"), printed_steps(live, r"p1 @ (\d+) \(edited\)")
        assert live.send("UNDO")["ok"]  # the node's class back to the file's version
    assert max(before) <= point and after[0] == point + 1, "the edited code did not run from the next batch"
    assert before + after == list(range(before[0], after[-1] + 1)), "a batch printed twice or not at all"


def test_a_layer_added_to_the_model_keeps_the_old_tensors_and_trains_on(live, workspace):
    paused = live.send("PAUSE")
    assert paused["ok"], paused
    try:
        first = live.send("CHECKPOINT")
        with edited(
            workspace, MODEL, LAYER_END, "nn.MaxPool2d(2),\n            nn.Conv2d(2 * width, 2 * width, 1),\n        )"
        ):
            reply = live.send("RELOAD_MODULE", "src.model.SimpleConv")
        second = live.send("CHECKPOINT")
    finally:
        assert live.send("RESUME")["ok"]
    assert reply["ok"], reply
    missing = "missing keys: features.6.bias, features.6.weight"
    assert reply["message"] == f"reloaded src.model.SimpleConv; rebuilt the model ({missing}); tried on the last batch"
    assert missing in run_log(live)
    checkpoints = live.run_dir / "checkpoints"
    before = torch.load(checkpoints / f"{first['data']['id']}.pt", weights_only=False)["modules"]
    after = torch.load(checkpoints / f"{second['data']['id']}.pt", weights_only=False)["modules"]
    assert set(after["MODEL"]) == set(before["MODEL"]) | {"features.6.weight", "features.6.bias"}
    assert all(torch.equal(before["MODEL"][key], after["MODEL"][key]) for key in before["MODEL"])
    assert len(before["OPTIMIZER"]["state"]) == 6 and len(after["OPTIMIZER"]["param_groups"][0]["params"]) == 8
    rows = live.wait_logged(batch_point(reply["point"]) + 3)
    assert all(math.isfinite(float(row["loss"])) for row in rows[-3:])
    undone = live.send("UNDO")
    assert undone["ok"] and "unexpected keys: features.6.bias, features.6.weight" in undone["message"], undone


HELPER = '\n\ndef helper():\n    return "{}"\n'


@pytest.mark.parametrize(
    ("file", "module", "old", "new", "problem", "marker"),
    [
        (
            COMMAND,
            "src.ipc.CustomCommand",
            "flush=True)",
            "flush=True\n",
            "SyntaxError: '(' was never closed",
            "flush=True",
        ),
        (
            MODEL,
            "src.model.SimpleConv",
            "super().__init__()",
            'super().__init__()\n        raise ValueError("bad width in the new model")',
            "building the model: ValueError: bad width in the new model",
            "raise ValueError",
        ),
        (
            MODEL,
            "src.model.SimpleConv",
            "2 * width * 8 * 8",
            "2 * width * 4 * 4",
            "the canary pass on the last batch: RuntimeError: mat1 and mat2 shapes cannot be multiplied",
            "return self.head",
        ),
        (
            COMMAND,
            "src.ipc.CustomCommand",
            'prefix: str = "loss"',
            'needed: str\n        prefix: str = "loss"',
            "LossPrintCommand (node 'LossPrintCommand') needs argument 'needed'",
            None,
        ),
    ],
    ids=["syntax-error", "constructor-raises", "incompatible-head", "new-required-argument"],
)
def test_a_reload_that_cannot_work_is_refused_with_its_file_and_line_and_the_training_goes_on(
    live, workspace, file, module, old, new, problem, marker
):
    with printing(live, "refused"):
        version, journaled = live.send("STATUS")["version"], len(live.journal())
        with edited(workspace, file, old, new) as path:
            reply = live.send("RELOAD_MODULE", module)
            line = line_of(path, marker) if marker else None
        assert not reply["ok"] and problem in reply["message"], reply
        assert f"{module} is as it was; the running code is unchanged" in reply["message"]
        if line is not None:
            assert (reply["errors"][0]["file"], reply["line"]) == (str(path), line), reply
        assert live.send("STATUS")["version"] == version and len(live.journal()) == journaled
        step = live.last_logged_step()
        rows = live.wait_logged(step + 3)
        assert all(math.isfinite(float(row["loss"])) for row in rows[-3:])
        wait_for(lambda: max(printed_steps(live, r"refused at step (\d+)"), default=0) > step, "the old print")


def test_a_module_that_redefines_a_helper_then_raises_leaves_the_old_helper_running(live, workspace):
    uses_helper = PRINT.replace("at step", "{helper()} at step")
    with edited(workspace, COMMAND, PRINT, uses_helper) as path:
        path.write_text(path.read_text() + HELPER.format("V2"))
        with printing(live, "h"):
            assert live.send("RELOAD_MODULE", "src.ipc.CustomCommand")["ok"]
            wait_for(lambda: printed_steps(live, r"h V2 at step (\d+)"), "the V2 helper", on_fail=live.describe)
            path.write_text(path.read_text() + HELPER.format("V3-PARTIAL") + '\nraise RuntimeError("half way")\n')
            reply = live.send("RELOAD_MODULE", "src.ipc.CustomCommand")
            assert not reply["ok"] and "executing the module: RuntimeError: half way" in reply["message"]
            assert reply["line"] == line_of(path, "raise RuntimeError"), reply
            step = max(printed_steps(live, r"h V2 at step (\d+)"))
            wait_for(lambda: max(printed_steps(live, r"h V2 at step (\d+)")) > step + 2, "the V2 helper to go on")
            assert "V3-PARTIAL" not in live.stdout()
            assert live.send("UNDO")["ok"]


def test_an_edited_train_step_of_the_container_takes_effect(live, workspace):
    step_line = "        return super().train_step()"
    marker = '        print("edited train_step", self.last_loss is not None, flush=True)\n'
    with edited(workspace, CONTAINER, step_line, marker + step_line):
        reply = live.send("RELOAD_MODULE", "src.trainer.ExampleContainer")
    assert reply["ok"], reply
    assert "rebound the container's methods (ExampleContainer); tried on the last batch" in reply["message"]
    wait_for(lambda: live.stdout().count("edited train_step True") >= 3, "the edited step", on_fail=live.describe)
    undone = live.send("UNDO")
    assert undone["ok"], undone
    time.sleep(0.5)
    count = live.stdout().count("edited train_step")
    live.wait_logged(live.last_logged_step() + 3)
    assert live.stdout().count("edited train_step") == count


def test_undo_after_two_reloads_undoes_them_in_turn_and_nothing_else(live, workspace):
    with printing(live, "u") as name:
        for version in ("U1", "U2"):
            with edited(workspace, COMMAND, PRINT, PRINT.replace("at step", f"{version} at step")):
                assert live.send("RELOAD_MODULE", "src.ipc.CustomCommand")["ok"]
        second, first = live.send("UNDO"), live.send("UNDO")
        assert second["ok"] and first["ok"], (second, first)
        ids = [entry["id"] for entry in live.journal() if entry["verb"] == "RELOAD_MODULE"][-2:]
        assert second["message"].startswith(f"src.ipc.CustomCommand as it was before patch {ids[1]}")
        assert first["message"].startswith(f"src.ipc.CustomCommand as it was before patch {ids[0]}")
        assert name in live.send("STATUS")["message"]  # the ADD before them stands
        step = live.last_logged_step()
        wait_for(lambda: max(printed_steps(live, r"u at step (\d+)"), default=0) > step, "the original print")


def test_a_replayed_journal_with_reloads_gives_bit_identical_weights(workspace):
    training = Training(workspace, "reload-replay", epochs=5, throttle=0.1, save_each_epoch=True)
    try:
        training.start()
        with edited(
            workspace, MODEL, LAYER_END, "nn.MaxPool2d(2),\n            nn.Conv2d(2 * width, 2 * width, 1),\n        )"
        ):
            model = training.send("RELOAD_MODULE", "src.model.SimpleConv")
        with edited(workspace, CONTAINER, "return super().train_step()", "return super().train_step() * 1.0"):
            container = training.send("RELOAD_MODULE", "src.trainer.ExampleContainer")
        assert training.wait_exit(timeout=60) == 0, training.describe()
    finally:
        training.kill()
    assert model["ok"] and container["ok"], (model, container)
    entries = training.journal()
    assert [entry["verb"] for entry in entries] == ["RELOAD_MODULE", "RELOAD_MODULE"]
    assert "nn.Conv2d(2 * width, 2 * width, 1)" in entries[0]["module"]["source"]
    replayed = replay_run(training, training.run_dir / "journal.jsonl")  # the files are as they were before
    original, again = final_weights(training.run_dir), final_weights(replayed)
    assert "features.6.weight" in again and original.keys() == again.keys()
    assert all(torch.equal(original[key], again[key]) for key in original)


def test_watch_code_reloads_a_saved_module_within_two_seconds(workspace):
    with running(workspace, "reload-watch", throttle=0.05, args=["--watch-code"]) as training:
        time.sleep(0.5)  # the watcher is watching
        with edited(workspace, COMMAND, PRINT, PRINT.replace("at step", "watched at step")):
            saved = time.monotonic()
            entry = wait_for(lambda: training.journal(), "a journal entry", timeout=2.0, on_fail=training.describe)
            took = time.monotonic() - saved
            wait_for(lambda: "watch: RELOAD_MODULE reloaded src.ipc.CustomCommand" in training.stderr(), "the outcome")
        assert took < 2.0
        assert [(e["verb"], e["text"], e["origin"]) for e in entry] == [
            ("RELOAD_MODULE", "src.ipc.CustomCommand", "watch")
        ]
        assert "watched at step" in entry[0]["module"]["source"]
