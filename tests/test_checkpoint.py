"""Checkpoints a crash never leaves corrupt (docs/design.md §9): atomic writes, the store, SIGKILL at random times."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from deepleaps.train.checkpoint import META, CheckpointRef, CheckpointStore, atomic_write

# ---- atomic_write --------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file(tmp_path: Path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, lambda file: file.write(b"first"))
    atomic_write(target, lambda file: file.write(b"second"))
    assert target.read_bytes() == b"second"
    assert sorted(path.name for path in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
def test_atomic_write_never_leaves_a_partial_file(tmp_path: Path, error: BaseException):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old content")

    def write(file):
        file.write(b"half of the new cont")
        file.flush()
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, write)
    assert target.read_bytes() == b"old content"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file.bin"], "a temporary file was left behind"


def test_atomic_write_of_a_new_file_that_fails_leaves_nothing(tmp_path: Path):
    target = tmp_path / "new.bin"

    def write(file):
        file.write(b"partial")
        raise ValueError("cannot serialise")

    with pytest.raises(ValueError):
        atomic_write(target, write)
    assert list(tmp_path.iterdir()) == []


# ---- CheckpointStore -------------------------------------------------------------------------------


def test_an_empty_store_has_no_latest(tmp_path: Path):
    store = CheckpointStore(tmp_path / "run")
    assert store.meta() == {"latest": None, "checkpoints": []}
    assert store.latest() is None


def test_save_latest_meta_and_sequential_ids(tmp_path: Path):
    store = CheckpointStore(tmp_path)
    first = store.save({"modules": {"MODEL": {"w": torch.zeros(3)}}}, {"TRAINING_LOADER": {"step": 1}})
    second = store.save({"modules": {"MODEL": {"w": torch.ones(3)}}}, {"TRAINING_LOADER": {"step": 2}})

    assert (first.id, second.id) == ("000001", "000002")
    assert first.path == tmp_path / "checkpoints" / "000001.pt" == store.path_of("000001")
    assert second.counters == {"TRAINING_LOADER": {"step": 2}}
    assert json.loads((tmp_path / META).read_text()) == store.meta()
    assert store.meta() == {
        "latest": "000002",
        "checkpoints": [
            {"id": "000001", "file": "000001.pt", "counters": {"TRAINING_LOADER": {"step": 1}}},
            {"id": "000002", "file": "000002.pt", "counters": {"TRAINING_LOADER": {"step": 2}}},
        ],
    }
    assert store.latest() == CheckpointRef("000002", tmp_path / "checkpoints" / "000002.pt")
    assert torch.equal(CheckpointStore.load(store.latest())["modules"]["MODEL"]["w"], torch.ones(3))
    assert torch.equal(CheckpointStore.load(first.path)["modules"]["MODEL"]["w"], torch.zeros(3))
    assert torch.equal(CheckpointStore.load(str(first.path))["modules"]["MODEL"]["w"], torch.zeros(3))
    # A store opened again on the same run directory goes on numbering.
    assert CheckpointStore(tmp_path).save({"step": 3}).id == "000003"
    assert CheckpointStore(tmp_path).latest().id == "000003"
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["000001.pt", "000002.pt", "000003.pt"]


def test_save_does_not_keep_a_reference_to_the_payload(tmp_path: Path):
    store = CheckpointStore(tmp_path)
    weights = {"w": torch.zeros(2)}
    ref = store.save({"modules": {"MODEL": weights}})
    weights["w"] += 1  # training goes on after the checkpoint
    assert torch.equal(CheckpointStore.load(ref)["modules"]["MODEL"]["w"], torch.zeros(2))


# ---- SIGKILL while saving ----------------------------------------------------------------------------

#: Saves checkpoints of a ~5 MB state dict in a loop. The driver imports torch once and
#: forks one saving child per "go" line on stdin, printing its pid, then "dead" once the
#: test has killed it: so each kill costs a fork, not a Python start.
DRIVER = textwrap.dedent(
    """
    import os
    import sys

    import torch

    torch.set_num_threads(1)
    from deepleaps.train.checkpoint import CheckpointStore

    run_dir = sys.argv[1]
    base = torch.arange(1_250_000, dtype=torch.float32)  # 5 MB

    def save_forever():
        store = CheckpointStore(run_dir)
        while True:
            latest = store.latest()
            number = int(latest.id) + 1 if latest else 1
            payload = {"modules": {"MODEL": {"weight": base + number}}, "number": number}
            store.save(payload, {"SAVE": {"total_step": number}})

    print("ready", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                save_forever()
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("dead", flush=True)
    """
)

KILLS = 24
TIME_LIMIT = 90.0


def check_run_directory(run_dir: Path) -> CheckpointStore:
    """Every checkpoint on disk and the meta file load; latest names a file that exists."""
    store = CheckpointStore(run_dir)
    meta = store.meta()  # valid JSON, or no file yet
    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        payload = CheckpointStore.load(path)
        number = int(path.stem)
        assert payload["number"] == number, f"{path.name} holds checkpoint {payload['number']}"
        assert torch.equal(payload["modules"]["MODEL"]["weight"][:3], torch.tensor([0.0, 1.0, 2.0]) + number)
    if meta["checkpoints"]:
        latest = store.latest()
        assert latest is not None and latest.id == meta["checkpoints"][-1]["id"]
        assert latest.path.is_file(), f"ckp.meta names {latest.id}, which is not on disk"
        numbers = [int(entry["id"]) for entry in meta["checkpoints"]]
        assert numbers == list(range(1, len(numbers) + 1))
    return store


def prune(run_dir: Path, store: CheckpointStore) -> None:
    """Keep the disk small: only the latest checkpoint stays (and no temporary files)."""
    latest = store.latest()
    for path in (run_dir / "checkpoints").iterdir():
        if latest is None or path != latest.path:
            path.unlink()


def test_sigkill_while_saving_never_corrupts_a_checkpoint(tmp_path: Path):
    run_dir = tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    driver = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    rng = random.Random(20240601)
    started = time.monotonic()
    kills, saved = 0, 0
    try:
        assert driver.stdout.readline().strip() == "ready"
        while kills < KILLS:
            assert time.monotonic() - started < TIME_LIMIT, f"only {kills} kills in {TIME_LIMIT} s"
            driver.stdin.write("go\n")
            driver.stdin.flush()
            pid = int(driver.stdout.readline())
            time.sleep(rng.uniform(0.01, 0.3))
            os.kill(pid, signal.SIGKILL)
            assert driver.stdout.readline().strip() == "dead"
            kills += 1
            store = check_run_directory(run_dir)
            latest = store.latest()
            saved = int(latest.id) if latest else 0
            prune(run_dir, store)
    finally:
        driver.stdin.close()
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
        driver.stdout.close()
    assert kills == KILLS
    assert driver.returncode == 0
    assert saved > KILLS // 2, f"only {saved} checkpoints were written: the kills hit too early to test much"
