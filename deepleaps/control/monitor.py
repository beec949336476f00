"""The seed's monitor file, ``monitor.txt`` in the run directory: the program version and
the running tree with every node's counters (docs/control.md, the monitor file).

It is written on the training's thread, at a safe point, in time linear in the program
(about 30–130 ms at 10,000 nodes, docs/benchmarks.md). The controller offers to rewrite
it once a second; it takes at most :data:`SHARE` of the time: after a write that took
``t`` seconds, the next waits ``t / SHARE`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from deepleaps.compiler.views import plan_tree
from deepleaps.runtime.interpreter import Interpreter

log = logging.getLogger("deepleaps.control")

#: Its name in the run directory.
FILE = "monitor.txt"
#: The most of the training's time that rewriting it takes.
SHARE = 0.01


class Monitor:
    """Keeps ``path`` showing the program ``interpreter`` runs."""

    def __init__(self, path: Path, interpreter: Interpreter, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.interpreter = interpreter
        self._clock = clock
        self._due = 0.0

    def due(self) -> bool:
        """Whether the last write is long enough ago for the next."""
        return self._clock() >= self._due

    def write(self, version: int) -> None:
        """Rewrite the file (to a temporary file, then renamed) with ``version`` above the tree."""
        from deepleaps.train.checkpoint import atomic_write  # deepleaps.train loads torch

        started = self._clock()
        text = f"version {version}\n" + plan_tree(self.interpreter.plan, self.interpreter.states)
        try:
            atomic_write(self.path, lambda file: file.write(text.encode()), durable=False)
        except OSError as problem:
            log.warning("cannot write the monitor file: %s", problem)
        finished = self._clock()
        self._due = finished + (finished - started) / SHARE
