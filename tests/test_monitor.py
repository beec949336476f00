"""The monitor file: what it shows, and that rewriting it takes at most its share of the
training's time (deepleaps/control/monitor.py)."""

from __future__ import annotations

import deepleaps.runtime.commands  # noqa: F401  (registers the built-in commands)
from deepleaps.compiler import REGISTRY, compile_source
from deepleaps.control import monitor as module
from deepleaps.control.engine import Controller
from deepleaps.control.monitor import FILE, SHARE, Monitor
from deepleaps.runtime import Interpreter


class Clock:
    """A clock that moves only when told."""

    now = 100.0

    def __call__(self) -> float:
        return self.now


def interpreter() -> Interpreter:
    compiled = compile_source('$root( *PrintCommand[content="x"] as P )', registry=REGISTRY)
    return Interpreter(compiled.plan, registry=REGISTRY)


def test_the_file_shows_the_version_and_the_tree_with_counters(tmp_path):
    monitor = Monitor(tmp_path / FILE, interpreter())
    assert monitor.due()
    monitor.write(7)
    lines = (tmp_path / FILE).read_text().splitlines()
    assert lines[0] == "version 7"
    assert lines[1].startswith("root (Graph)") and lines[2].strip().startswith("P (PrintCommand)")


def test_a_costly_write_waits_in_proportion_before_the_next(tmp_path, monkeypatch):
    clock = Clock()
    monitor = Monitor(tmp_path / FILE, interpreter(), clock=clock)

    def drawn_slowly(plan, states):
        clock.now += 0.05  # a large program: 50 ms to draw
        return "tree\n"

    monkeypatch.setattr(module, "plan_tree", drawn_slowly)
    monitor.write(1)
    assert not monitor.due()
    clock.now += 0.05 / SHARE - 0.01
    assert not monitor.due(), "written again before it took only its share"
    clock.now += 0.02
    assert monitor.due()
    assert (tmp_path / FILE).read_text() == "version 1\ntree\n"


def test_an_unwritable_file_is_logged_and_the_training_goes_on(tmp_path, caplog):
    (tmp_path / FILE).mkdir()  # a folder where the file goes: the rename fails
    Monitor(tmp_path / FILE, interpreter()).write(1)
    assert "cannot write the monitor file" in caplog.text


def test_the_controller_keeps_it_only_with_a_run_directory(tmp_path):
    run = interpreter()
    assert Controller(run, run.plan, registry=REGISTRY).monitor is None
    run = interpreter()
    controller = Controller(run, run.plan, registry=REGISTRY, run_dir=tmp_path)
    controller.tick()
    assert (tmp_path / FILE).read_text().startswith("version 1\n")
