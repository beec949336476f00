"""The control channel against real trainings: real processes, real sockets (docs/design.md §5, §6).

The seed's client (with STOP) and replay get trainings of their own and come
first; the other tests share one endless training (token mode,
``.deepleaps/control.json`` where ``deepleaps send`` finds it), started when
the first of them runs, and leave its program as they found it.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
import torch
from control_fixtures import (
    BATCHES_PER_EPOCH,
    Training,
    batch_point,
    make_control_workspace,
    program_text,
    run_cli,
    running,
    wait_for,
    write_command_file,
)

#: The client of the seed's README, verbatim.
SEED_CLIENT = """\
import socket
import threading
from struct import pack

host = '127.0.0.1'
port = 1568
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect((host, port))

try:
    while True:
        data = input(':')
        length = pack('>Q', len(data))
        client_socket.sendall(length)
        client_socket.sendall(data.encode())
        ack = client_socket.recv(1)
        print('send ack ok')
except Exception as e:
    print(e)
    client_socket.close()
"""

IMAGE_GRID = '$TRAINING_BATCH( *SaveImageGridCommand[run_cycle="TRAINING_BATCH.step:1"] )'
#: A print that stays quiet: it runs once every 100000 batches.
QUIET = 'run_cycle="TRAINING_BATCH.step:100000"'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_control_workspace(tmp_path_factory.mktemp("control-live"))


@pytest.fixture(scope="module")
def live(workspace):
    """An endless training in token mode, shared by the tests of this module."""
    with running(workspace, "live", throttle=0.05, private=False) as training:
        yield training


def added_names(reply: dict) -> list[str]:
    return [op["name"] for op in reply["script"]["operations"] if op["op"] == "add_node"]


def tree_names(training: Training) -> set[str]:
    """The node names of the live tree (STATUS)."""
    reply = training.send("STATUS")
    assert reply["ok"], reply
    return set(re.findall(r"^\s*(\S+) \(", reply["data"]["tree"], re.MULTILINE))


def assert_consecutive(rows: list[dict[str, str]]) -> None:
    steps = [int(row["total_step"]) for row in rows]
    assert steps == list(range(steps[0], steps[0] + len(steps))), "metrics.csv skipped or repeated a batch"


# ---- the seed's client ---------------------------------------------------------------------


def run_seed_client(port: int, lines: list[str]) -> tuple[list[bytes], list[str]]:
    """Run :data:`SEED_CLIENT` with its ``input(':')`` lines taken from ``lines``; the acks and what it printed."""
    acks: list[bytes] = []
    printed: list[str] = []
    namespace: dict = {}
    pending = list(lines)

    def fake_input(prompt: str = "") -> str:
        if "ack" in namespace:  # the ack of the previous frame
            acks.append(namespace.pop("ack"))
        if not pending:
            raise EOFError("no more input")
        return pending.pop(0)

    namespace.update(input=fake_input, print=lambda *args: printed.append(" ".join(map(str, args))))
    code = SEED_CLIENT.replace("port = 1568", f"port = {port}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # a missing ack fails the test instead of hanging it
    try:
        exec(compile(code, "seed_client.py", "exec"), namespace)
    finally:
        socket.setdefaulttimeout(previous)
    return acks, printed


def run_log(training: Training) -> str:
    return (training.run_dir / "run.log").read_text(encoding="utf-8")


def test_seed_client_unchanged_gets_an_ack_per_frame_and_stop_ends_the_run(workspace):
    with running(workspace, "seed", controller={"unauthenticated": True}) as training:
        lines = [
            'ADD $TRAINING_BATCH( *PrintCommand[content="seen-by-seed", run_cycle="TRAINING_BATCH.step:2"] )',
            "STATUS",
            "ADD $TRAINING_BATCH( *PrintCommand[content= )",  # rejected: still acknowledged
        ]
        acks, printed = run_seed_client(training.port, lines)
        assert printed == ["send ack ok"] * len(lines) + ["no more input"]
        assert acks == [b"\x00"] * len(lines)
        wait_for(
            lambda: "seen-by-seed" in training.stdout(), "the added PrintCommand to print", on_fail=training.describe
        )
        assert re.search(r"^\[TRAINING_BATCH step \d*[02468]\] seen-by-seed$", training.stdout(), re.MULTILINE)
        wait_for(lambda: "ADD rejected" in training.stdout(), "the rejection to be printed", on_fail=training.describe)

        # STOP (over HELLO, which the seed's mode also takes): a checkpoint, then exit status 0.
        reply = training.send("STOP")
        assert reply["ok"], reply
        match = re.search(r"checkpoint (\d+)", reply["message"])
        assert match, reply["message"]
        assert training.wait_exit(timeout=30) == 0, training.describe()
        meta = json.loads((training.run_dir / "ckp.meta").read_text())
        assert meta["latest"] == match.group(1)
        assert (training.run_dir / "checkpoints" / f"{match.group(1)}.pt").is_file()
        assert [entry["verb"] for entry in training.journal()] == ["ADD", "STOP"]


def test_seed_client_against_a_token_training_is_reset_unacknowledged_and_the_log_says_why(live):
    hint = "its first frame is not 'HELLO <token>'"
    before = run_log(live).count(hint)
    acks, printed = run_seed_client(live.port, ["STATUS", "PING"])
    assert acks == []
    assert len(printed) == 1 and "reset" in printed[0], printed  # no 'send ack ok'
    log = wait_for(lambda: (text := run_log(live)).count(hint) > before and text, "the refusal to be logged")
    (line,) = [line for line in log.splitlines() if hint in line][before:]
    assert "WARNING" in line
    assert "COMMAND_CONTROLLER: {unauthenticated: true}" in line and "loopback" in line
    assert live.info["token_file"] in line


@pytest.fixture(scope="module")
def seed_mode(workspace):
    """An endless training that also takes the seed's client (``unauthenticated: true``)."""
    with running(workspace, "seed-mode", throttle=0.05, controller={"unauthenticated": True}) as training:
        yield training


def test_each_rejection_is_logged_once(seed_mode):
    acks, _ = run_seed_client(
        seed_mode.port, ["NOSUCH_SEED", 'ADD $TRAINING_BATCH( *PrintCommand[content="rejected-seed" )']
    )
    assert acks == [b"\x00"] * 2
    with seed_mode.client() as client:
        assert not client.send("NOSUCH_HELLO")["ok"]
        assert not client.send("ADD", '$TRAINING_BATCH( *PrintCommand[content="rejected-hello" )')["ok"]
    # The seed's outcome is printed after it is logged.
    wait_for(lambda: "rejected-seed" in seed_mode.stdout(), "the seed's ADD to be refused", on_fail=seed_mode.describe)
    log = run_log(seed_mode)
    for rejection in ("NOSUCH_SEED rejected", "NOSUCH_HELLO rejected", '"rejected-seed"', '"rejected-hello"'):
        assert log.count(rejection) == 1, f"{rejection!r} in run.log:\n{log}"


@pytest.mark.parametrize("value", ["héllo wörld", "wö"])  # cut after a character, or in the middle of one
def test_seed_client_text_beyond_ascii_is_refused_as_a_length_in_characters(seed_mode, value):
    """The seed's client sends ``len(data)`` characters, fewer than the bytes of non-ASCII text."""

    def exported() -> list[str]:
        return [entry["text"] for entry in seed_mode.journal() if entry["verb"] == "EXPORT"]

    cause = "the length must count the bytes of the UTF-8 text, not its characters"
    logged, done = run_log(seed_mode).count(cause), len(exported())
    acks, printed = run_seed_client(seed_mode.port, [f"EXPORT seed_note={value}"])
    assert acks == []
    assert len(printed) == 1 and "reset" in printed[0], printed  # no 'send ack ok'
    log = wait_for(lambda: (text := run_log(seed_mode)).count(cause) > logged and text, "the refusal to be logged")
    assert "over the limit" not in log
    # The training and the server go on; nothing of the refused frame was carried out.
    seed_mode.wait_logged(seed_mode.last_logged_step() + 2)
    acks, _ = run_seed_client(seed_mode.port, ["EXPORT seed_note=after"])
    assert acks == [b"\x00"]
    wait_for(lambda: len(exported()) > done, "the next EXPORT to be applied", on_fail=seed_mode.describe)
    assert exported()[done:] == ["seed_note=after"]


# ---- journal and replay ----------------------------------------------------------------------


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    meta = json.loads((run_dir / "ckp.meta").read_text())
    payload = torch.load(run_dir / "checkpoints" / f"{meta['latest']}.pt", map_location="cpu", weights_only=False)
    return payload["modules"]["MODEL"]


def replay_run(training: Training, journal: Path) -> Path:
    """``deepleaps run --replay JOURNAL`` with the training's command file, to its end; the new run directory."""
    result = run_cli(training.workspace, "run", "--port", "0", "--config", training.config, "--replay", str(journal))
    assert result.returncode == 0, result.stderr
    match = re.search(r"^run directory: (.+)$", result.stderr, re.MULTILINE)
    assert match, result.stderr
    return Path(match.group(1).strip())


def points(entries: list[dict]) -> list[tuple]:
    return [
        (entry["verb"], entry.get("text"), entry["point"]["node"], entry["point"]["counters"], entry["diff"])
        for entry in entries
    ]


def chronological(entry: dict) -> tuple[int, int, int]:
    """Where a point of this module's program comes in a run: TRAINING_LOADER's safe point k lies
    between TRAINING_BATCH's last one of epoch k and its first one of epoch k + 1."""
    point, counters = entry["point"], entry["point"]["counters"]
    if point["node"] == "TRAINING_LOADER":
        return (counters["total_step"], 1, 0)
    return (counters["epoch"], 0, counters["step"])


def test_replay_reapplies_the_journal_at_the_same_points_with_identical_weights(workspace, tmp_path):
    training = Training(workspace, "replay", epochs=3, throttle=0.1, save_each_epoch=True)
    try:
        training.start()
        added = training.send("ADD", '$TRAINING_BATCH( *RunCommand[method="train_step"] )')
        assert added["ok"], added
        lr = training.send("SET", "optimizer.lr 0.05")
        assert lr["ok"], lr
        assert training.wait_exit(timeout=60) == 0, training.describe()
    finally:
        training.kill()
    live_entries = training.journal()
    assert [entry["verb"] for entry in live_entries] == ["ADD", "SET"]
    assert [entry["id"] for entry in live_entries] == [added["patch_id"], lr["patch_id"]]
    assert [entry["point"] for entry in live_entries] == [added["point"], lr["point"]]

    # Markers around the boundary of epochs 2 and 3, where TRAINING_BATCH's last safe point of
    # epoch 2 and its first of epoch 3 share total_step 8: each must land on its own.
    boundary = 2 * BATCHES_PER_EPOCH
    markers = [
        ("TRAINING_BATCH", {"step": BATCHES_PER_EPOCH, "total_step": boundary, "epoch": 2}),
        ("TRAINING_LOADER", {"step": 2, "total_step": 2, "epoch": 0}),
        ("TRAINING_BATCH", {"step": 0, "total_step": boundary, "epoch": 3}),
    ]
    entries = live_entries + [
        {
            "id": 10 + index,
            "verb": "EXPORT",
            "text": f"marker {index}",
            "diff": None,
            "point": {"node": n, "counters": c},
        }
        for index, (n, c) in enumerate(markers)
    ]
    entries.sort(key=chronological)
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(json.dumps(entry) + "\n" for entry in entries))

    replayed_dir = replay_run(training, journal)
    assert replayed_dir != training.run_dir
    replayed = [json.loads(line) for line in (replayed_dir / "journal.jsonl").read_text().splitlines()]
    assert points(replayed) == points(entries)

    live_weights, replay_weights = final_weights(training.run_dir), final_weights(replayed_dir)
    assert live_weights.keys() == replay_weights.keys()
    for key, tensor in live_weights.items():
        assert torch.equal(tensor, replay_weights[key]), f"{key} differs after replay"


def test_replay_fails_when_the_run_never_reaches_a_journal_point(workspace, tmp_path):
    journal = tmp_path / "journal.jsonl"
    point = {"node": "TRAINING_BATCH", "counters": {"step": 3, "total_step": 999, "epoch": 1}}
    journal.write_text(json.dumps({"id": 7, "verb": "EXPORT", "text": "never 1", "diff": None, "point": point}))
    config = write_command_file(workspace, "replay-missed", epochs=1, throttle=0.0)
    result = run_cli(workspace, "run", "--no-server", "--config", config, "--replay", str(journal))
    assert result.returncode == 1, result.stderr
    assert "not replayed" in result.stderr and "entry 7" in result.stderr


# ---- patches over HELLO + token --------------------------------------------------------------


def test_image_grid_added_then_removed_saves_exactly_the_batches_in_between(live):
    images = live.run_dir / "images"
    added = live.send("ADD", IMAGE_GRID)
    assert added["ok"], added
    assert added["patch_id"] >= 1
    assert added["point"]["path"].startswith("root/")
    (name,) = added_names(added)
    assert name.startswith("SaveImageGridCommand")
    start = batch_point(added["point"])

    def pngs() -> list[int]:
        return sorted(int(path.stem.rpartition("-")[2]) for path in images.glob(f"{name}-*.png"))

    try:
        wait_for(lambda: len(pngs()) >= 3, "three image grids", on_fail=live.describe)
    finally:
        removed = live.send("REMOVE", name)
    assert removed["ok"], removed
    assert removed["patch_id"] > added["patch_id"]
    end = batch_point(removed["point"])
    live.wait_logged(end + 3)
    # The node ran at every batch from the one after the ADD's point up to the REMOVE's point.
    assert pngs() == list(range(1, end - start + 1))
    assert name not in tree_names(live)


def test_set_lr_applies_from_the_next_batch(live):
    reply = live.send("SET", "optimizer.lr 0.123")
    assert reply["ok"], reply
    assert "lr" in reply["message"]
    assert [entry["verb"] for entry in live.journal() if entry["id"] == reply["patch_id"]] == ["SET"]
    point = batch_point(reply["point"])
    try:
        rows = live.wait_logged(point + 3)
    finally:
        live.send("SET", "optimizer.lr 0.01")
    lrs = {int(row["total_step"]): float(row["lr"]) for row in rows}
    assert all(lr != 0.123 for step, lr in lrs.items() if step <= point)
    assert all(lr == 0.123 for step, lr in lrs.items() if point < step <= point + 3)
    assert any(step <= point for step in lrs), "no batch logged before the SET"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('optimizer.lr "abc"', 'optimizer.lr takes a number >= 0 (as torch.optim checks it), not "abc"'),
        ("optimizer.lr -1", "optimizer.lr takes a number >= 0 (as torch.optim checks it), not -1"),
        ('main.root "/"', "main.root is not a setting of ExampleContainer"),
        ("main.model.head null", "SET does not change the model (main.model.head)"),
        ("main.model.training false", "SET does not change the model (main.model.training)"),
    ],
)
def test_a_value_the_run_cannot_take_is_refused_and_the_training_goes_on_unchanged(live, payload, message):
    version, journaled = live.send("STATUS")["version"], len(live.journal())
    reply = live.send("SET", payload)
    assert not reply["ok"] and message in reply["message"], reply
    step = live.last_logged_step()
    rows = live.wait_logged(step + 3)
    assert {float(row["lr"]) for row in rows if int(row["total_step"]) > step} == {0.01}
    assert live.send("STATUS")["version"] == version
    assert len(live.journal()) == journaled


def test_set_of_the_label_smoothing_the_container_declares_is_applied(live):
    reply = live.send("SET", "main.loss.label_smoothing 0.1")
    try:
        assert reply["ok"] and reply["message"] == "loss.label_smoothing = 0.1", reply
        assert [entry["verb"] for entry in live.journal() if entry["id"] == reply["patch_id"]] == ["SET"]
        live.wait_logged(batch_point(reply["point"]) + 2)
    finally:
        assert live.send("SET", "main.loss.label_smoothing 0")["ok"]


@pytest.mark.parametrize(
    ("payload", "line", "column"),
    [
        ('$TRAINING_BATCH( *PrintCommand[content="x" )', 1, 44),
        ("$TRAINING_BATCH(\n    *PrintCommand[content=] )", 2, 27),
    ],
)
def test_syntax_error_is_rejected_with_line_and_column_and_training_goes_on(live, payload, line, column):
    version = live.send("STATUS")["version"]
    before = live.last_logged_step()
    reply = live.send("ADD", payload)
    assert not reply["ok"]
    assert (reply["line"], reply["column"]) == (line, column), reply
    assert reply["errors"] and reply["errors"][0]["message"]
    assert "Traceback" not in reply["message"]
    rows = live.wait_logged(before + 5)
    assert_consecutive(rows)
    assert live.send("STATUS")["version"] == version


@pytest.mark.parametrize(
    ("payload", "value"),
    [("seen=bareword", "bareword"), ("seen two words", "two words"), ('seen "quoted"', "quoted"), ("seen 3", 3)],
)
def test_export_takes_a_literal_or_else_the_raw_text_as_the_seed_did(live, payload, value):
    reply = live.send("EXPORT", payload)
    assert reply["ok"], reply
    assert reply["message"] == f"$seen = {value!r}"
    marker = f"export-{reply['patch_id']}"
    added = live.send("ADD", f'$TRAINING_BATCH( *PrintCommand[content=[$seen, "{marker}"]] )')
    assert added["ok"], added
    try:
        wait_for(lambda: marker in live.stdout(), "the PrintCommand to print $seen", on_fail=live.describe)
    finally:
        live.send("REMOVE", *added_names(added))
    assert f"] [{value!r}, '{marker}']" in live.stdout()


@pytest.mark.parametrize("value", ['"not closed', "[1, 2", "{lr="])
def test_export_of_a_string_list_or_mapping_left_open_is_rejected(live, value):
    reply = live.send("EXPORT", f"broken {value}")
    assert not reply["ok"]
    assert reply["errors"][0]["file"] == "<EXPORT>" and reply["line"] == 1, reply


def test_undo_after_add_removes_the_node(live):
    added = live.send("ADD", f'$TRAINING_BATCH( *PrintCommand[content="undo-me", {QUIET}] )')
    assert added["ok"], added
    (name,) = added_names(added)
    assert name in tree_names(live)
    undone = live.send("UNDO")
    assert undone["ok"], undone
    assert undone["version"] == added["version"] + 1
    assert name not in tree_names(live)
    assert [entry["verb"] for entry in live.journal()][-2:] == ["ADD", "UNDO"]


def test_pause_stops_the_training_and_resume_restarts_it(live):
    paused = live.send("PAUSE")
    assert paused["ok"], paused
    try:
        held = live.last_logged_step()
        status = live.send("STATUS")
        assert status["data"]["paused"] is True
        time.sleep(1.0)
        assert live.last_logged_step() == held, "metrics.csv grew while paused"
    finally:
        resumed = live.send("RESUME")
    assert resumed["ok"], resumed
    assert resumed["message"] == "resumed"
    live.wait_logged(held + 3)
    assert live.send("STATUS")["data"]["paused"] is False


def test_checkpoint_adds_a_checkpoint_to_ckp_meta(live):
    meta = live.run_dir / "ckp.meta"
    before = json.loads(meta.read_text())["checkpoints"] if meta.is_file() else []
    reply = live.send("CHECKPOINT")
    assert reply["ok"], reply
    checkpoint_id = reply["data"]["id"]
    after = json.loads(meta.read_text())
    assert [entry["id"] for entry in after["checkpoints"]] == [*(entry["id"] for entry in before), checkpoint_id]
    assert after["latest"] == checkpoint_id
    assert (live.run_dir / "checkpoints" / f"{checkpoint_id}.pt").is_file()


def with_node(node: str) -> str:
    """The training's program with ``node`` added to TRAINING_BATCH."""
    text = program_text()
    assert "$THROTTLE )" in text
    return text.replace("$THROTTLE )", f"$THROTTLE, {node} )")


def test_diff_changes_nothing_and_returns_a_script(live):
    version = live.send("STATUS")["version"]
    names = tree_names(live)
    reply = live.send("DIFF", with_node(f'*LossPrintCommand[prefix="diff", {QUIET}]'))
    assert reply["ok"], reply
    assert reply["script"]["schema"] == "deepleaps.edit/1"
    assert reply["script"]["base_version"] == version
    assert [op["command"] for op in reply["script"]["operations"] if op["op"] == "add_node"] == ["LossPrintCommand"]
    assert any(line.startswith("+ ") for line in reply["diff"])
    assert "patch_id" not in reply
    assert live.send("STATUS")["version"] == version
    assert tree_names(live) == names
    unchanged = live.send("DIFF", program_text())
    assert unchanged["ok"] and unchanged["script"]["operations"] == []


def test_two_clients_patch_from_the_same_version_the_second_is_refused_as_stale(live):
    names = tree_names(live)
    with live.client() as first, live.client() as second:
        mine = first.send("DIFF", with_node(f'*PrintCommand[content="first", {QUIET}]'))
        theirs = second.send("DIFF", with_node(f'*LossPrintCommand[prefix="second", {QUIET}]'))
        assert mine["ok"] and theirs["ok"], (mine, theirs)
        version = mine["script"]["base_version"]
        assert theirs["script"]["base_version"] == version

        applied = first.send("PATCH", json.dumps(mine["script"]))
        assert applied["ok"], applied
        assert applied["version"] == version + 1
        try:
            refused = second.send("PATCH", json.dumps(theirs["script"]))
            assert not refused["ok"]
            assert "stale" in refused["message"]
            assert f"version {version}" in refused["message"]
            assert f"version {version + 1}" in refused["message"]
            assert "patch_id" not in refused
            status = second.send("STATUS")
            assert status["version"] == version + 1
            now = tree_names(live)
            assert len(now - names) == 1
            assert not any(name.startswith("LossPrintCommand") for name in now - names)
            assert live.journal()[-1]["id"] == applied["patch_id"]
        finally:
            assert first.send("UNDO")["ok"]
    assert tree_names(live) == names


def test_cli_send_status_and_diff_against_the_run(live, workspace, tmp_path):
    status = run_cli(workspace, "status")
    assert status.returncode == 0, status.stderr
    assert "TRAINING_BATCH (DataLoaderCommand)" in status.stdout

    sent = run_cli(workspace, "send", "STATUS")
    assert sent.returncode == 0, sent.stderr
    assert "TRAINING_STEP" in sent.stdout

    lr = run_cli(workspace, "send", "SET", "optimizer.lr", "0.01")
    assert lr.returncode == 0, lr.stderr

    bad = run_cli(workspace, "send", "ADD", '$TRAINING_BATCH( *PrintCommand[content="x" )')
    assert bad.returncode == 1
    assert "1:44" in bad.stderr and "^" in bad.stderr
    assert "Traceback" not in bad.stderr

    edited = tmp_path / "edited.dl"
    edited.write_text(with_node(f'*PrintCommand[content="cli", {QUIET}]'), encoding="utf-8")
    version = live.send("STATUS")["version"]
    shown = run_cli(workspace, "diff", str(edited))
    assert shown.returncode == 0, shown.stderr
    assert "+ PrintCommand" in shown.stdout
    as_json = run_cli(workspace, "diff", "--json", str(edited))
    assert as_json.returncode == 0, as_json.stderr
    script = json.loads(as_json.stdout)
    assert script["schema"] == "deepleaps.edit/1"
    assert script["base_version"] == version
    assert live.send("STATUS")["version"] == version  # diff is a dry run


def test_reload_module_rebuilds_the_model_with_its_weights_and_the_training_goes_on(workspace):
    path = workspace / "src" / "model" / "SimpleConv.py"
    original = path.read_text()
    with_dropout = original.replace(
        "nn.MaxPool2d(2),\n        )", "nn.MaxPool2d(2),\n            nn.Dropout(0.0),\n        )"
    )
    assert with_dropout != original, "the example model changed: update this test"
    with running(workspace, "reload", throttle=0.05) as training:
        try:
            path.write_text("def broken(:\n")
            broken = training.send("RELOAD_MODULE", "src.model.SimpleConv")
            path.write_text(with_dropout)
            reloaded = training.send("RELOAD_MODULE", "src.model.SimpleConv")
        finally:
            path.write_text(original)
        assert not broken["ok"]
        assert "SyntaxError" in broken["message"] and "the running code is unchanged" in broken["message"]
        assert reloaded["ok"], reloaded
        assert "the model (every weight carried over)" in reloaded["message"]
        rows = training.wait_logged(batch_point(reloaded["point"]) + 3)
        assert_consecutive(rows)


def test_an_exported_program_edited_and_applied_keeps_its_labelled_node(live, workspace, tmp_path):
    names = tree_names(live)
    added = live.send("ADD", f'$TRAINING_BATCH( *PrintCommand[content="labelled", {QUIET}] as P )')
    assert added["ok"], added
    try:
        assert "P" in tree_names(live)
        exported = tmp_path / "exported.dl"
        written = run_cli(workspace, "program", str(exported))
        assert written.returncode == 0, written.stderr
        version = added["version"]
        assert written.stdout == f"version {version} of the running program written to {exported}\n"
        text = exported.read_text(encoding="utf-8")
        assert text.startswith(f"# version {version} of the running program")
        assert f'*PrintCommand[content="labelled", {QUIET}, on_error="remove"] as P' in text

        # A new anonymous twin goes in before P, and P changes: P stays P (labels first).
        edited = text.replace(
            f'*PrintCommand[content="labelled", {QUIET}, on_error="remove"] as P',
            f'*PrintCommand[content="labelled", {QUIET}], *PrintCommand[content="edited", {QUIET}] as P',
        )
        assert edited != text
        exported.write_text(edited, encoding="utf-8")
        applied = run_cli(workspace, "apply", str(exported))
        assert applied.returncode == 0, applied.stderr
        lines = applied.stdout.splitlines()
        assert '~ P.content = "edited"' in lines
        assert "+ PrintCommand (PrintCommand) in TRAINING_BATCH" in lines
        assert f"(version {version + 1})" in applied.stdout
        assert live.journal()[-1]["verb"] == "APPLY"
        assert tree_names(live) == names | {"P", "PrintCommand"}
        assert live.send("UNDO")["ok"]
    finally:
        assert live.send("UNDO")["ok"]
    assert tree_names(live) == names


def test_an_exported_program_is_refused_as_stale_once_another_change_landed(live, workspace, tmp_path):
    names = tree_names(live)
    exported = tmp_path / "exported.dl"
    assert run_cli(workspace, "program", str(exported)).returncode == 0
    version = exported_version_of(exported)
    other = live.send("ADD", f'$TRAINING_BATCH( *PrintCommand[content="meanwhile", {QUIET}] as M )')
    assert other["ok"] and other["version"] == version + 1, other
    try:
        exported.write_text(exported.read_text(encoding="utf-8").replace("$THROTTLE", "$THROTTLE, *Print"), "utf-8")
        refused = run_cli(workspace, "apply", str(exported))
        assert refused.returncode == 1
        assert f"stale: made against version {version}, the program is at version {version + 1}" in refused.stderr
        assert refused.stderr.splitlines()[-1].startswith(f"note: {exported} was written at version {version}. ")
        assert live.send("STATUS")["version"] == version + 1
        assert tree_names(live) == names | {"M"}

        # An explicit --base applies it at the version it names: M, which the file lacks, goes.
        forced = run_cli(workspace, "apply", "--base", str(version + 1), str(exported))
        assert forced.returncode == 0, forced.stderr
        assert "- M" in forced.stdout.splitlines()
        assert tree_names(live) == names | {"Print"}
        assert live.send("UNDO")["ok"]
    finally:
        assert live.send("UNDO")["ok"]
    assert tree_names(live) == names


def exported_version_of(path: Path) -> int:
    match = re.match(r"# version ([0-9]+) of the running program", path.read_text(encoding="utf-8"))
    assert match, path.read_text(encoding="utf-8")
    return int(match.group(1))


def test_a_burst_of_changes_is_paced_to_its_share_and_the_training_goes_on(workspace):
    """COMMAND_CONTROLLER.change_share: back-to-back changes wait their turn, so that their
    work stays within the share of the time (docs/control.md, "Pacing")."""
    # At 1%, the burst's 0.1 s of work outgrows the budget (0.05 s, refilled at 0.01 s a second)
    # however slowly a loaded machine serves it.
    share = 0.01
    with running(workspace, "paced", throttle=0.005, controller={"change_share": share}) as training:
        first = training.send("STATUS")["data"]
        started = time.monotonic()
        for _ in range(40):
            added = added_names(training.send("ADD", f'$TRAINING_BATCH( *PrintCommand[content="p", {QUIET}] )'))
            assert training.send("REMOVE", added[0])["ok"]
        elapsed = time.monotonic() - started
        last = training.send("STATUS")["data"]
    pacing = last["pacing"]
    assert pacing["share"] == share
    assert pacing["waited_s"] > 0, f"the burst never waited: {pacing}, {elapsed=}"
    # The budget's promise (deepleaps.control.pacing), with 0.1 s for the request that spent it.
    assert pacing["work_s"] - first["pacing"]["work_s"] <= share * elapsed + 0.05 + 0.1
    assert last["version"] == first["version"] + 80
    assert last["nodes"]["TRAINING_BATCH"]["total_step"] > first["nodes"]["TRAINING_BATCH"]["total_step"]
