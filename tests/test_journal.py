"""The journal: appends on the caller's thread, makes entries durable on its own, in groups."""

from __future__ import annotations

import os
import threading

import pytest

from deepleaps.control import journal as journal_module
from deepleaps.control.journal import Journal, read_journal


def test_every_entry_is_readable_and_durable_once_its_future_resolves(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    futures = [journal.write({"id": number, "verb": "SET", "point": {}}) for number in range(1, 51)]
    for future in futures:
        assert future.result(timeout=10) is None
    assert journal.sync(timeout=10)
    assert [entry["id"] for entry in read_journal(journal.path)] == list(range(1, 51))
    journal.close()


def test_entries_written_while_a_sync_is_under_way_share_the_next_one(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    calls = []
    real_fsync = os.fsync

    def slow_fsync(descriptor):
        calls.append(descriptor)
        started.set()
        release.wait(10)
        real_fsync(descriptor)

    monkeypatch.setattr(journal_module.os, "fsync", slow_fsync)
    journal = Journal(tmp_path / "journal.jsonl")
    first = journal.write({"id": 1, "verb": "ADD", "point": {}})
    assert started.wait(10)
    rest = [journal.write({"id": number, "verb": "ADD", "point": {}}) for number in range(2, 21)]
    assert not first.done() and not any(future.done() for future in rest), "resolved before the sync"
    release.set()
    for future in [first, *rest]:
        future.result(timeout=10)
    assert len(calls) == 2, "the 19 entries written during the first sync were not synced together"
    journal.close()


def test_a_failed_sync_is_reported_through_the_future(tmp_path, monkeypatch):
    def broken_fsync(descriptor):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fsync", broken_fsync)
    journal = Journal(tmp_path / "journal.jsonl")
    future = journal.write({"id": 1, "verb": "ADD", "point": {}})
    with pytest.raises(OSError, match="Input/output error"):
        future.result(timeout=10)
    journal.close()


def test_a_write_that_fails_raises_and_leaves_nothing_pending(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.path.unlink()
    journal.path.mkdir()
    with pytest.raises(IsADirectoryError):
        journal.write({"id": 1, "verb": "ADD", "point": {}})
    assert journal.sync(timeout=1)
    journal.close()
