"""The journal: every applied change as a JSON line in the run directory (docs/design.md §6).

Each line holds the patch id, the verb, its text, the edit script (for plan
changes) and the point where it took effect. ``deepleaps run --replay``
re-applies each entry at the same point.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from deepleaps.lang.diagnostics import Diagnostic, ProgramError

FILE = "journal.jsonl"


class Journal:
    """Appends entries; a thread of its own makes them durable.

    :meth:`write` appends a line and hands it to the operating system (microseconds,
    on the training thread); the writer thread then ``fsync``s whatever has been
    written since its last ``fsync`` in one go (a group commit) and resolves the
    future each write returned. Replies wait for that future; checkpoints wait
    for :meth:`sync`, so none is ever written ahead of the entries its state includes.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.touch()  # every run has one, empty while nothing changed
        self._lock = threading.Condition()
        self._written = 0  # entries written so far
        self._durable = 0  # of which fsynced
        self._waiting: list[tuple[int, Future]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._sync_forever, name="deepleaps-journal", daemon=True)
        self._thread.start()

    def write(self, entry: dict[str, Any]) -> Future:
        """Append one entry; the future resolves once it is on disk.

        Raises:
            OSError: it could not be written (then nothing was).
        """
        line = json.dumps({**entry, "time": time.time()}, sort_keys=True) + "\n"
        durable: Future = Future()
        with self._lock:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line)
            self._written += 1
            self._waiting.append((self._written, durable))
            self._lock.notify_all()
        return durable

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until every entry written so far is on disk; False if that took longer than ``timeout``."""
        with self._lock:
            target = self._written
            return self._lock.wait_for(lambda: self._durable >= target or self._closed, timeout)

    def close(self) -> None:
        """Make everything durable and end the writer thread."""
        self.sync()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()

    def _sync_forever(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._written > self._durable or self._closed)
                if self._written == self._durable:
                    return  # closed, and nothing left to sync
                target = self._written
            problem: OSError | None = None
            try:
                descriptor = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except OSError as error:
                problem = error
            with self._lock:
                self._durable = target
                done = [future for number, future in self._waiting if number <= target]
                self._waiting = [(number, future) for number, future in self._waiting if number > target]
                self._lock.notify_all()
            for future in done:
                if problem is None:
                    future.set_result(None)
                else:
                    future.set_exception(problem)


def read_journal(path: Path | str) -> list[dict[str, Any]]:
    """The entries of a journal file, in order; a torn last line (a crash mid-write) is dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ProgramError([Diagnostic(f"cannot read journal '{path}': {error.strerror}")]) from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ProgramError([Diagnostic(f"{path}:{number}: not a journal entry")]) from None
        if not isinstance(entry, dict) or not {"id", "verb", "point"} <= entry.keys():
            raise ProgramError([Diagnostic(f"{path}:{number}: not a journal entry")])
        entries.append(entry)
    return entries
