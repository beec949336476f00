"""Reading files another process appends to, a little at a time: the journal and the metric CSVs.

Each read returns only the complete lines written since the last one, so the cost of a
read follows what was written since, not the length of the run.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any


def _complete_lines(data: bytes) -> tuple[list[str], int]:
    """The complete lines of ``data`` and how many bytes they take (a torn last line waits)."""
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace").splitlines(), end


class JournalTail:
    """The entries of a ``journal.jsonl`` as they are appended."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                lines, used = _complete_lines(file.read())
        except FileNotFoundError:
            return []
        self._offset += used
        return [json.loads(line) for line in lines if line.strip()]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class CsvTail:
    """The rows of a metrics CSV as they are appended, as numbers (None where a cell is empty).

    ``LogMetricsCommand`` rewrites its file with a wider header when a metric appears
    later; a header that changed (or a file that shrank) starts the reading over, and
    :meth:`read` says so.
    """

    def __init__(self, path: Path):
        self.path = path
        self._header = b""
        self._offset = 0
        self.columns: list[str] = []

    def read(self) -> tuple[bool, list[list[float | None]]]:
        """Whether the reading started over (the rows before are void), and the new rows."""
        try:
            with self.path.open("rb") as file:
                header = file.readline()
                restart = header != self._header or file.seek(0, 2) < self._offset
                if restart:
                    self._header, self._offset = header, len(header)
                    self.columns = next(csv.reader([header.decode("utf-8", errors="replace")]), [])
                file.seek(self._offset)
                lines, used = _complete_lines(file.read())
        except FileNotFoundError:
            return False, []
        if not header.endswith(b"\n"):  # being written: nothing is complete yet
            self._header = b""
            return restart, []
        self._offset += used
        return restart, [[_number(cell) for cell in row] for row in csv.reader(lines)]
