"""How much of the training's time the control channel's requests may take (docs/control.md, "Pacing").

Requests are prepared on the threads that receive them and carried out at
the training's safe points, all in the training's process: under the
interpreter lock, a millisecond of that work on any thread is about a
millisecond the training waits (docs/benchmarks.md). Pacing keeps the
requests' work to a share of the time: each request's work (its preparation
or answer on the receiving thread, its commit at the safe point) is charged
to a budget that refills by ``share`` seconds a second, and a request waits
before its work begins while the budget is in debt. Work is the CPU time of
the thread that did it: a request waiting for the interpreter lock or for a
disk costs the training nothing meanwhile.

Over any span of T seconds the requests' work is at most ``share`` × T, plus
the :data:`BURST` the budget holds, plus the request that spent it, as long
as no request takes more than :data:`MAX_DEBT`: requests now and then never
wait, a burst is spread out. A larger request (a checkpoint of a large
model, a reload) is not repaid beyond :data:`MAX_DEBT`: no request waits
longer than ``MAX_DEBT / share`` seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

#: Seconds of work the budget holds: a burst that costs less is not slowed at all.
BURST = 0.05
#: Seconds of work the budget may owe: the longest wait is this over the share.
MAX_DEBT = 0.1
#: A debt this small is repaid: a sleep of the exact time may leave a rounding error.
_ROUNDING = 1e-9


class Pacing:
    """A budget of work, in seconds, that refills by ``share`` seconds a second (thread-safe).

    ``share`` 1: unpaced, never waits.
    """

    def __init__(
        self,
        share: float,
        burst: float = BURST,
        debt: float = MAX_DEBT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 0 < share <= 1:
            raise ValueError(f"the share of the time requests may take must be in (0, 1], not {share!r}")
        self.share = share
        self.burst = burst
        self.debt = debt
        #: Seconds of work charged, and seconds requests waited, since the run started (STATUS shows them).
        self.work = 0.0
        self.waited = 0.0
        self._clock = clock
        self._sleep = sleep
        self._balance = burst
        self._last = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Return once the budget is not in debt; the seconds waited (at once: 0)."""
        waited = 0.0
        while self.share < 1:
            with self._lock:
                self._refill()
                if self._balance >= -_ROUNDING:
                    self.waited += waited
                    return waited
                pause = -self._balance / self.share
            self._sleep(pause)
            waited += pause
        return waited

    def charge(self, seconds: float) -> None:
        """Take the work a request did from the budget (it may go into debt: the next requests wait)."""
        with self._lock:
            self._refill()
            self._balance = max(self._balance - seconds, -self.debt)
            self.work += seconds

    @contextlib.contextmanager
    def charging(self) -> Iterator[None]:
        """Charge the CPU time the calling thread spends in the block, however it ends."""
        start = time.thread_time()
        try:
            yield
        finally:
            self.charge(time.thread_time() - start)

    def to_json(self) -> dict[str, float]:
        return {"share": self.share, "work_s": round(self.work, 6), "waited_s": round(self.waited, 6)}

    def _refill(self) -> None:
        now = self._clock()
        self._balance = min(self.burst, self._balance + (now - self._last) * self.share)
        self._last = now
