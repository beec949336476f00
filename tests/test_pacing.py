"""Pacing: the requests' work kept to a share of the training's time (docs/control.md, "Pacing")."""

from __future__ import annotations

import threading
import time

import pytest
from control_fixtures import InProcess
from hypothesis import given
from hypothesis import strategies as st

from deepleaps.control.pacing import BURST, MAX_DEBT, Pacing
from deepleaps.control.server import ServerSettings
from deepleaps.lang import ProgramError


class Clock:
    """Time that passes only when the code under test sleeps or a test says so."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def paced(share: float, burst: float = BURST, debt: float = MAX_DEBT) -> tuple[Pacing, Clock]:
    clock = Clock()
    return Pacing(share, burst, debt, clock=clock, sleep=clock.sleep), clock


def test_a_request_now_and_then_never_waits():
    pacing, clock = paced(0.1)
    for _ in range(20):
        assert pacing.wait() == 0
        clock.now += 0.001
        pacing.charge(0.001)
        clock.now += 0.02  # 1 ms of work every 21 ms: under a tenth
    assert clock.sleeps == []


def test_once_the_burst_is_spent_a_request_waits_for_its_work_to_be_repaid_at_the_share():
    pacing, clock = paced(0.1, burst=0.05)
    pacing.charge(0.08)  # 30 ms of debt
    assert pacing.wait() == pytest.approx(0.3)
    assert sum(clock.sleeps) == pytest.approx(0.3)
    assert pacing.to_json() == {"share": 0.1, "work_s": 0.08, "waited_s": pytest.approx(0.3)}


def test_a_large_request_is_repaid_up_to_the_most_debt_the_budget_may_owe():
    pacing, _ = paced(0.1, burst=0.05, debt=0.1)
    pacing.charge(30.0)  # a checkpoint of a large model
    assert pacing.wait() == pytest.approx(1.0)  # 0.1 s of debt at a tenth
    assert pacing.work == 30.0


def test_charging_takes_the_cpu_time_of_the_block_even_when_it_raises():
    pacing, _ = paced(0.5)
    with pytest.raises(RuntimeError), pacing.charging():
        deadline = time.thread_time() + 0.02
        while time.thread_time() < deadline:
            pass
        raise RuntimeError("refused")
    assert pacing.work >= 0.02


def test_share_one_never_waits():
    pacing, clock = paced(1.0)
    pacing.charge(1000.0)
    assert pacing.wait() == 0
    assert clock.sleeps == []


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        Pacing(share)


@pytest.mark.parametrize("share", [0, 2, "fast", True, None])
def test_the_setting_is_checked_and_named(share):
    with pytest.raises(ProgramError, match=r"COMMAND_CONTROLLER.change_share must be a number in \(0, 1\]"):
        ServerSettings.from_section({"change_share": share})


@given(
    share=st.floats(0.01, 0.99),
    burst=st.floats(0, 0.1),
    requests=st.lists(st.tuples(st.floats(0, MAX_DEBT), st.floats(0, 0.2)), min_size=1, max_size=60),
)
def test_work_over_any_span_is_at_most_the_share_plus_the_burst_plus_one_request(share, burst, requests):
    """A client that waits, works, then idles, no request larger than the most debt: over
    every span from the start, the work done is at most share × the span + the burst + the
    largest request; and no wait is longer than the most debt over the share."""
    pacing, clock = paced(share, burst)
    start, done, largest = clock.now, 0.0, 0.0
    for work, idle in requests:
        before = clock.now
        waited = pacing.wait()
        assert clock.now - before == pytest.approx(waited, abs=1e-9)
        assert waited <= MAX_DEBT / share + 1e-9
        clock.now += work
        pacing.charge(work)
        done, largest = done + work, max(largest, work)
        assert done <= share * (clock.now - start) + burst + largest + 1e-9
        clock.now += idle
    assert pacing.work == pytest.approx(done)


def test_a_controller_charges_every_request_but_stop_status_and_ping_which_never_wait(tmp_path):
    engine = InProcess(tmp_path, {"name": "SGD", "lr": 0.1})
    controller = engine.controller
    controller.pacing = Pacing(0.5)
    assert engine.send("ADD", '$root( *PrintCommand[content="y"] )')["ok"]
    charged = engine.send("STATUS")["data"]["pacing"]
    assert charged["work_s"] > 0
    assert engine.send("PING")["ok"]
    assert engine.send("STATUS")["data"]["pacing"] == charged, "looking changed what STATUS shows"
    controller.pacing = Pacing(0.001, burst=0.0)
    controller.pacing.charge(60.0)  # owed up to 0.1 s: at a thousandth, a change waits 100 s
    asked = threading.Event()

    def change() -> None:
        controller.request("SET", "optimizer.lr 0.2")
        asked.set()

    threading.Thread(target=change, daemon=True).start()
    assert not asked.wait(0.3), "SET did not wait for the budget"
    started = time.monotonic()
    assert engine.send("PING")["ok"]
    assert engine.send("STATUS")["data"]["pacing"]["work_s"] >= 60
    stop = controller.request("STOP")
    controller.on_safe_point(engine.interpreter, engine.node)
    assert stop.result(timeout=5).ok
    assert time.monotonic() - started < 5
    assert not asked.is_set()
