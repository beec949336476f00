"""``deepleaps run --watch-code``: a workspace module saved while it is in use is reloaded.

The watcher only asks: each saved module becomes a ``RELOAD_MODULE`` request through
:meth:`Controller.request`, the path the socket's requests take, so it is checked,
journaled (origin ``watch``) and refused or replied like one (docs/reload.md). Saves
that come in quick succession are one reload; each outcome is printed on the console.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

import watchfiles

from deepleaps.control.engine import Controller, Reply

#: A change is reloaded once no other was seen for this long (milliseconds)…
QUIET_MS = 250
#: …or once changes kept coming for this long.
LONGEST_MS = 1600


def module_names(workspace: Path, paths: Iterable[str], loaded: Iterable[str]) -> list[str]:
    """The modules among ``loaded`` whose files are ``paths`` (those inside ``workspace``)."""
    loaded = set(loaded)
    names = set()
    for path in paths:
        try:
            parts = list(Path(path).resolve().relative_to(workspace).with_suffix("").parts)
        except ValueError:
            continue
        if parts and parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name in loaded:
            names.add(name)
    return sorted(names)


def _printed(reply: Reply) -> str:
    if reply.ok:
        return f"watch: {reply.verb} {reply.message} (patch {reply.patch_id})"
    return f"watch: {reply.verb} refused: {reply.message}"


class CodeWatcher:
    """A thread that watches ``workspace`` for saved Python files the run has imported."""

    def __init__(self, controller: Controller, workspace: Path, echo: Callable[[str], None] | None = None):
        self.controller = controller
        self.workspace = workspace.resolve()
        self._echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="deepleaps-watch-code", daemon=True)

    def start(self) -> CodeWatcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        changes = watchfiles.watch(
            self.workspace,
            watch_filter=watchfiles.PythonFilter(),
            step=QUIET_MS,
            debounce=LONGEST_MS,
            stop_event=self._stop,
            raise_interrupt=False,
        )
        for batch in changes:
            saved = [path for change, path in batch if change is not watchfiles.Change.deleted]
            for name in module_names(self.workspace, saved, list(sys.modules)):
                future = self.controller.request("RELOAD_MODULE", name, origin="watch")
                future.add_done_callback(self._report)

    def _report(self, done: Future) -> None:
        self._echo(_printed(done.result()))
