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
from pathlib import Path
from typing import Any

from deepleaps.lang.diagnostics import Diagnostic, ProgramError

FILE = "journal.jsonl"


class Journal:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.touch()  # every run has one, empty while nothing changed

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry and flush it to disk before the change is replied."""
        line = json.dumps({**entry, "time": time.time()}, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())


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
