"""A tqdm bar per loader activation, showing the running loss."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, description: str, total: int | None):
        self._bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True, file=sys.stderr)
        self._running: float | None = None

    def update(self, loss: float | None) -> None:
        if loss is not None:
            self._running = loss if self._running is None else 0.9 * self._running + 0.1 * loss
            self._bar.set_postfix_str(f"loss {self._running:.4f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
