"""Live changes you can trust, against real trainings: reply ok ⇔ journaled ⇔ in effect,
a failed node removed once and for all, and resume going on with the changed program
(docs/design.md §6, §9)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from control_fixtures import make_control_workspace, run_cli, running, wait_for
from workspace_fixtures import (  # noqa: F401  (small_workspace is a fixture)
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

from deepleaps.control import editjson, editscript
from deepleaps.control.client import Client, ControlError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_control_workspace(tmp_path_factory.mktemp("changes"))


def journal_entries(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.strip()]


def test_an_unwritable_journal_refuses_the_change_and_changes_nothing(workspace):
    with running(workspace, "unwritable") as training:
        version = training.send("STATUS")["version"]
        journal = training.run_dir / "journal.jsonl"
        journal.unlink()
        journal.mkdir()  # writing a line now fails, whoever runs the test
        try:
            reply = training.send("ADD", '$TRAINING_BATCH( *PrintCommand[content="never"] )')
            assert not reply["ok"]
            assert reply["message"].startswith("error: the journal cannot be written (IsADirectoryError")
            assert reply["message"].endswith("; nothing changed")
            lr = training.send("SET", "optimizer.lr 0.5")
            assert not lr["ok"]
            status = training.send("STATUS")
            assert status["version"] == version
            assert "PrintCommand" not in status["message"]
            assert float(training.metrics()[-1]["lr"]) != 0.5
        finally:
            journal.rmdir()
            journal.touch()
        reply = training.send("ADD", '$TRAINING_BATCH( *PrintCommand[content="now"] )')
        assert reply["ok"], reply
        assert reply["version"] == version + 1
        assert [entry["verb"] for entry in journal_entries(training.run_dir)] == ["ADD"]


def test_a_failing_added_node_is_removed_journaled_reported_and_never_comes_back(workspace):
    with running(workspace, "failing") as training:
        added = training.send("ADD", "$TRAINING_BATCH( *PrintCommand[content=$no_such_variable] )")
        assert added["ok"], added

        def removed():
            status = training.send("STATUS")
            return status if status["data"]["removed"] else None

        status = wait_for(removed, "the failed node to be removed", on_fail=training.describe)
        (event,) = status["data"]["removed"]
        assert event["node"] == "PrintCommand" and event["added_by"] == added["patch_id"]
        assert "no_such_variable" in event["error"]
        assert "PrintCommand" not in status["message"].split("removed by the runtime")[0]
        assert "removed by the runtime: PrintCommand (added by patch" in status["message"]
        entries = journal_entries(training.run_dir)
        assert [entry["verb"] for entry in entries] == ["ADD", "REMOVE"]
        assert entries[0]["origin"].startswith("127.0.0.1:") and entries[1]["origin"] == "runtime"
        assert entries[1]["text"] == "PrintCommand" and entries[1]["version"] == added["version"] + 1
        assert (entries[1]["error"], entries[1]["added_by"]) == (event["error"], added["patch_id"])
        # A later, unrelated change leaves it out; removing it says it is not there.
        later = training.send("ADD", "$TRAINING_BATCH( *ThrottleCommand[seconds=0.0] )")
        assert later["ok"], later
        assert "PrintCommand" not in training.send("STATUS")["data"]["tree"]
        gone = training.send("REMOVE", "PrintCommand")
        assert not gone["ok"] and "there is no node 'PrintCommand'" in gone["message"]
        # No UNDO brings it back: the first undoes the later change, and the ADD made only it.
        undone = training.send("UNDO")
        assert undone["ok"] and undone["diff"] == ["- ThrottleCommand"], undone
        assert training.send("UNDO")["message"] == "nothing to undo"
        assert "PrintCommand" not in training.send("STATUS")["data"]["tree"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("TRAINING_BATCH.tag 5", "unknown argument 'tag' for DataLoaderCommand"),
        ("TRAINING_BATCH.batch_size '\"eight\"'", "argument 'batch_size' of DataLoaderCommand expects"),
    ],
)
def test_set_of_a_node_argument_runs_the_compilers_checks(workspace, payload, message):
    with running(workspace, "checked") as training:
        version = training.send("STATUS")["version"]
        reply = training.send("SET", payload.replace("'", ""))
        assert not reply["ok"] and message in reply["message"], reply
        assert training.send("STATUS")["version"] == version


def test_patch_is_checked_as_a_whole_program(workspace):
    def patch(*operations) -> str:
        return json.dumps(editjson.script_to_data(editscript.EditScript(operations, base_version=1)))

    add = editscript.AddNode("P", "TRAINING_BATCH", "PrintCommand", "graph")
    with running(workspace, "patched") as training:
        reply = training.send("PATCH", patch(add, editscript.SetArgument("P", "bogus", 1)))
        assert not reply["ok"]
        assert "node 'P' is a graph, but PrintCommand is a leaf" in reply["message"]
        assert "unknown argument 'bogus' for PrintCommand" in reply["message"]
        leaf = editscript.AddNode("P", "TRAINING_BATCH", "PrintCommand", "leaf", {"run_cycle": "every 3"})
        reply = training.send("PATCH", patch(leaf))
        assert not reply["ok"] and "'run_cycle' must look like" in reply["message"], reply
        assert training.send("STATUS")["version"] == 1


# ---- resume with live changes ---------------------------------------------------------------------

EPOCHS = 60


def _send(workspace: Path, verb: str, payload: str = "") -> dict:
    with Client(workspace=workspace, timeout=60) as client:
        reply = client.send(verb, payload)
    assert reply["ok"], reply
    return reply


def test_resume_goes_on_with_the_changed_program_and_ends_as_a_run_given_the_same_changes(small_workspace):  # noqa: F811
    config = write_command_file(small_workspace, "changed.yaml", epochs=EPOCHS)
    process = start_deepleaps(small_workspace, "run", "--port", "0", "--config", config, "--name", "changed")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _send(small_workspace, "PAUSE")
                break
            except (ControlError, OSError, AssertionError):
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.1)
        added = _send(
            small_workspace,
            "ADD",
            '$TRAINING_BATCH( *PrintCommand[content="hello", run_cycle="TRAINING_BATCH.step:2"] )',
        )
        _send(small_workspace, "SET", "TRAINING_BATCH.batch_size 8")
        _send(small_workspace, "SET", "optimizer.lr 0.005")
        _send(small_workspace, "EXPORT", "note=hello")
        status = _send(small_workspace, "STATUS")
        checkpoint = _send(small_workspace, "CHECKPOINT")
        process.kill()  # still paused: the checkpoint is the run's last word
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    (run_dir,) = run_directories(small_workspace, "changed")
    saved = load(checkpoints(run_dir)[-1])
    assert checkpoints(run_dir)[-1].stem == checkpoint["data"]["id"]
    assert saved["control"]["version"] == status["version"] == added["version"] + 1
    assert saved["variables"] == {"note": "hello"}
    entries = journal_entries(run_dir)
    assert [entry["verb"] for entry in entries] == ["PAUSE", "ADD", "SET", "SET", "EXPORT", "CHECKPOINT"]
    # The UNDO history, newest first: the plan changes (SET of a node argument, ADD).
    assert [change["patch_id"] for change in saved["control"]["history"]] == [entries[2]["id"], entries[1]["id"]]

    resumed = run_deepleaps(small_workspace, "run", "--config", config, "--name", "changed", "--mode", "resume")
    assert resumed.returncode == 0, describe(resumed)
    assert "hello" in resumed.stdout, "the node added live did not come back on resume"
    final = load(checkpoints(run_dir)[-1])
    assert final["control"]["version"] == status["version"]
    assert final["control"]["next_patch_id"] == entries[-1]["id"] + 1
    assert final["variables"] == {"note": "hello"}
    assert final["control"]["history"] == saved["control"]["history"]
    assert "PrintCommand" in final["states"]
    assert final["states"]["TRAINING_BATCH"]["step"] == 64 // 8, "batch_size 8 was not kept"

    # The same changes at the same point, in a run that is never killed: the journal, with the
    # RESUME that let the killed run go on.
    reference_journal = small_workspace / "changed_reference.jsonl"
    lines = [json.dumps(entry) for entry in entries]
    lines.append(json.dumps({**entries[-1], "id": entries[-1]["id"] + 1, "verb": "RESUME", "text": ""}))
    reference_journal.write_text("\n".join(lines) + "\n")
    reference = run_deepleaps(
        small_workspace, "run", "--config", config, "--name", "changed_reference", "--replay", str(reference_journal)
    )
    assert reference.returncode == 0, describe(reference)
    (reference_dir,) = run_directories(small_workspace, "changed_reference")
    expected = load(checkpoints(reference_dir)[-1])
    assert_same_tensors(final["modules"]["MODEL"], expected["modules"]["MODEL"])
    assert final["states"]["TRAINING_BATCH"] == expected["states"]["TRAINING_BATCH"]


def test_a_change_made_against_an_older_version_is_refused_as_stale(workspace):
    with running(workspace, "versions", private=False) as training:
        version = training.send("STATUS")["version"]
        first = training.send(f"ADD@{version}", '$TRAINING_BATCH( *PrintCommand[content="a"] )')
        assert first["ok"] and first["version"] == version + 1, first
        for verb, payload in [
            ("ADD", '$TRAINING_BATCH( *PrintCommand[content="b"] )'),
            ("SET", "TRAINING_BATCH.batch_size 4"),
            ("REMOVE", "PrintCommand"),
            ("APPLY", "$root( $TRAINER_CONTAINER_LOAD )"),
        ]:
            reply = training.send(f"{verb}@{version}", payload)
            assert not reply["ok"], reply
            assert reply["message"] == (
                f"error: stale: made against version {version}, the program is at version {version + 1}; "
                "look at it again (STATUS, DIFF) and resend"
            )
        assert training.send("STATUS")["version"] == version + 1
        assert not training.send("STATUS@1")["ok"]
        cli = run_cli(training.workspace, "send", "--base", str(version + 1), "REMOVE", "PrintCommand")
        assert cli.returncode == 0, cli.stderr
        stale = run_cli(training.workspace, "send", "--base", str(version + 1), "UNDO")
        assert stale.returncode == 1 and "stale: made against version" in stale.stderr
