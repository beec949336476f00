"""What the page is told: the training's state, gathered once an interval and sent to every page.

While at least one page listens, the feed asks the controller for ``STATUS`` once an
interval (and for ``DOT`` when the program's version moved, drawn as ``deepleaps compile
--svg`` draws it), reads the journal entries and metric rows written since, and sends one
event with what changed. However fast the training steps, a page gets at most one event
an interval, and with no page listening the feed asks nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from pathlib import Path
from typing import Any

from deepleaps.compiler.dot import DrawError, draw
from deepleaps.control.client import ControlError
from deepleaps.control.editjson import script_from_data
from deepleaps.control.journal import FILE as JOURNAL
from deepleaps.dashboard.link import Link
from deepleaps.dashboard.tail import CsvTail, JournalTail

log = logging.getLogger("deepleaps.dashboard")

#: Events a page may fall behind by before it is let go (it reconnects and starts afresh).
BACKLOG = 64


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A journal entry as the page shows it: its edit script as the lines ``deepleaps send`` prints."""
    shown = {key: entry.get(key) for key in ("id", "verb", "text", "origin", "point", "version", "time")}
    shown["diff"] = script_from_data(entry["diff"]).summary() if entry.get("diff") else []
    return shown


class _Run:
    """What has been read of one run directory."""

    def __init__(self, directory: Path, max_points: int):
        self.directory = directory
        self.journal = JournalTail(directory / JOURNAL)
        self.entries: list[dict[str, Any]] = []
        self.max_points = max_points
        self.tails: dict[str, CsvTail] = {}
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, collections.deque] = {}

    def read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """New journal entries, and per metrics file its new rows (``reset``: instead of all
        before). Reads the files only (in a worker thread); :meth:`keep` keeps what it read."""
        entries = [_entry(entry) for entry in self.journal.read()]
        metrics: dict[str, Any] = {}
        for path in sorted(self.directory.glob("*.csv")):
            tail = self.tails.setdefault(path.name, CsvTail(path))
            reset, new = tail.read()
            if reset or new:
                metrics[path.name] = {"columns": list(tail.columns), "rows": new[-self.max_points :], "reset": reset}
        return entries, metrics

    def keep(self, entries: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
        """Keep what :meth:`read` found, for the pages that come later (on the feed's loop)."""
        self.entries.extend(entries)
        for name, part in metrics.items():
            rows = self.rows.setdefault(name, collections.deque(maxlen=self.max_points))
            if part["reset"]:
                rows.clear()
            rows.extend(part["rows"])
            self.columns[name] = part["columns"]

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        metrics = {
            name: {"columns": self.columns[name], "rows": list(rows), "reset": True} for name, rows in self.rows.items()
        }
        return list(self.entries), metrics


class Feed:
    def __init__(self, link: Link, interval: float, max_points: int):
        self.link = link
        self.interval = interval
        self.max_points = max_points
        self._pages: set[asyncio.Queue] = set()
        self._listening = asyncio.Event()
        self._run: _Run | None = None
        self._state: dict[str, Any] = {
            "connected": False,
            "error": "connecting",
            "status": None,
            "svg": None,
            "graph_error": None,
        }
        self._drawn: int | None = None

    # ---- pages ----------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue:
        """A queue of events for one page, beginning with everything known so far."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=BACKLOG)
        entries, metrics = self._run.snapshot() if self._run is not None else ([], {})
        event = {**self._state, "journal": entries, "journal_reset": True, "metrics": metrics}
        queue.put_nowait(event)
        self._pages.add(queue)
        self._listening.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._pages.discard(queue)
        if not self._pages:
            self._listening.clear()

    def close(self, reason: str | None = None) -> None:
        """End every page's stream, telling it ``reason`` first if given."""
        if reason is not None:
            self._state.update(connected=False, error=reason)
            self._publish({"connected": False, "error": reason})
        for queue in list(self._pages):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        """End a page's stream: ``None`` where its backlog ends (a full backlog is emptied first)."""
        while queue.full():
            queue.get_nowait()
        queue.put_nowait(None)
        self.unsubscribe(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._pages):
            if queue.qsize() >= BACKLOG - 1:
                log.warning("a dashboard page fell %d events behind; it is let go and reconnects", BACKLOG)
                self._drop(queue)
            else:
                queue.put_nowait(event)

    # ---- the training ---------------------------------------------------------------

    async def run(self) -> None:
        """Update the pages once an interval while any listens."""
        while True:
            await self._listening.wait()
            try:
                await self.update()
            except Exception:  # a bug must not end the feed: the log has it, the next interval tries again
                log.exception("the dashboard could not update")
            await asyncio.sleep(self.interval)

    async def update(self) -> None:
        """Gather what changed since the last update and send it, if anything did."""
        try:
            status = await self.link.request("STATUS")
            data = status.get("data") or {}
            svg = await self._picture(data.get("version"))
        except ControlError as problem:
            self._drawn = None
            if self._state["connected"] or self._state["error"] != str(problem):
                self._state.update(connected=False, error=str(problem))
                self._publish({"connected": False, "error": str(problem)})
            return
        event: dict[str, Any] = {}
        if not self._state["connected"]:
            event.update(connected=True, error=None)
        if _training_of(data) != _training_of(self._state["status"]):
            event["status"] = data
        if svg is not None:
            event.update(svg)
        run_dir = data.get("run_dir")
        if run_dir and (self._run is None or str(self._run.directory) != run_dir):
            self._run = _Run(Path(run_dir), self.max_points)
            event.update(journal_reset=True, journal=[])
        if self._run is not None:
            entries, metrics = await asyncio.to_thread(self._run.read)
            self._run.keep(entries, metrics)
            if entries:
                event["journal"] = event.get("journal", []) + entries
            if metrics:
                event["metrics"] = metrics
        self._state.update({key: event[key] for key in self._state if key in event})
        if event:
            self._publish(event)

    async def _picture(self, version: int | None) -> dict[str, Any] | None:
        """The program drawn anew (``svg``, or ``graph_error``) if its version moved; else None."""
        if version == self._drawn:
            return None
        dot = await self.link.request("DOT")
        self._drawn = version
        try:
            svg = (await asyncio.to_thread(draw, dot.get("data") or "", "svg")).decode("utf-8")
        except DrawError as problem:
            return {"svg": None, "graph_error": str(problem)}
        return {"svg": svg, "graph_error": None}


def _training_of(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """STATUS data but for what the requests cost (``pacing``), which the feed's own requests move."""
    return None if status is None else {key: value for key, value in status.items() if key != "pacing"}
