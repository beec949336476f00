"""Benchmark what the live dashboard costs a training: step time with one browser attached vs none.

Trains the example workspace (``deepleaps init``: the small CNN on 1,200 generated
images, metrics.csv written every batch, validation and epochs.csv every epoch) with
``deepleaps run`` in three variants, each a process of its own:

* ``plain``: no dashboard;
* ``served``: ``--dashboard``, no page open (the feed asks nothing while none listens);
* ``browser``: ``--dashboard`` with one page open in a headless Chromium (Playwright,
  ``--chromium``), receiving its events (one a second: counters, metric points, the
  journal) and redrawing its graph and curves.

A command in the training's batch loop stamps the wall-clock time of every batch;
a step's time is the difference between two stamps. The bench waits until the run
serves (and, for ``browser``, until the page shows the training), then counts the
steps from one second later, so the page is attached for every step counted. Per
run: the median step time. Each round runs the three variants in the same order;
the table gives the median over rounds, and the median over rounds of each
variant's ratio to ``plain`` of the same round. The training uses one thread
(``OMP_NUM_THREADS=1``) on the first core the bench may use, the browser the
others (``sched_setaffinity``), as a browser on a workstation has cores of its
own; what the dashboard does in the training's process (its server thread, the
feed) competes with the training on the training's core.

Usage::

    python bench/dashboard.py                        # 5 rounds of 12 epochs
    python bench/dashboard.py --rounds 9 --epochs 20
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import cpu, load

CLOCK = '''\
"""Stamps the wall-clock time of every run (a batch) in steps.txt of the run directory."""

import time
from pathlib import Path

from deepleaps.compiler import Kind
from deepleaps.runtime import Command, command


@command
class StepClock(Command):
    name = "StepClock"
    kind = Kind.LEAF
    _file = None

    def run(self, ctx):
        if self._file is None:
            self._file = (Path(ctx.variables["base"]) / "steps.txt").open("a", buffering=1)
        self._file.write(f"{time.time()}\\n")
'''

PROGRAM = """\
$root(
    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
        $TRAINING_BATCH( $TRAINING_STEP -> $LOG_METRICS -> $CLOCK ) -> $VALIDATION -> $EPOCH_METRICS
    )
)
"""

VARIANTS = ("plain", "served", "browser")
_CORES = sorted(os.sched_getaffinity(0))
#: The training's core, and the browser's (all the others; the same one on a single core).
TRAINING_CORES, BROWSER_CORES = {_CORES[0]}, set(_CORES[1:] or _CORES)
#: Seconds after the run serves (and the page shows it) before steps are counted.
SETTLE = 1.0


def workspace(directory: Path, epochs: int) -> Path:
    subprocess.run(["deepleaps", "init", str(directory)], check=True, capture_output=True)
    (directory / "src" / "ipc" / "StepClock.py").write_text(CLOCK, encoding="utf-8")
    path = directory / "resource" / "configs" / "default.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["DEFAULT"] = [PROGRAM]
    config["ADD_COMMAND_MODULE"] = ["src.ipc.CustomCommand", "src.ipc.StepClock"]
    config["DEFINE"]["TRAINING_LOADER"]["repeat"] = epochs
    config["DEFINE"]["TRAINING_BATCH"]["args"] = {"loader": "train", "progress": False}
    config["DEFINE"]["LOG_METRICS"].update(run_cycle="TRAINING_BATCH.step:1", args={"tensorboard": False})
    config["DEFINE"]["CLOCK"] = {"command": "StepClock"}
    config["COMMAND_CONTROLLER"]["ipc_port"] = 0
    config["DEFINE"]["TRAINER_CONTAINER_LOAD"]["args"] = "resource/configs/trainer/ExampleContainer.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    trainer = directory / "resource" / "configs" / "trainer" / "ExampleContainer.yaml"
    trainer.write_text(trainer.read_text(encoding="utf-8").replace("device: auto", "device: cpu"), encoding="utf-8")
    return directory


def wait(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def one_run(directory: Path, variant: str, browser) -> float:
    """The median step time (seconds) of one run of ``variant``."""
    log = directory / f"{variant}.err"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = ["deepleaps", "run", *(["--dashboard"] if variant != "plain" else [])]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=lambda: os.sched_setaffinity(0, TRAINING_CORES),
        )
    run_dir = Path(wait(lambda: re.search(r"^run directory: (.+)$", log.read_text(), re.M), "the run").group(1))
    page = None
    if variant != "plain":
        url = wait(lambda: re.search(r"^dashboard: (\S+)$", log.read_text(), re.M), "the URL").group(1)
        if variant == "browser":
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#connection.live", timeout=60_000)
    start = time.time() + SETTLE
    if process.wait() != 0:
        sys.exit(f"{variant}: the training failed:\n{log.read_text()[-2000:]}")
    if page is not None:
        page.close()
    stamps = [float(line) for line in (run_dir / "steps.txt").read_text().split()]
    steps = [b - a for a, b in itertools.pairwise(stamps) if a >= start]
    if len(steps) < 100:
        sys.exit(f"{variant}: only {len(steps)} steps counted; give more --epochs")
    return statistics.median(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    os.sched_setaffinity(0, BROWSER_CORES)  # the browser (a child of this process) inherits it

    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=args.chromium)
        directory = workspace(Path(scratch) / "bench", args.epochs)
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                times[variant].append(one_run(directory, variant, browser))
            print(f"round {round_ + 1}: " + ", ".join(f"{v} {times[v][-1] * 1e3:.3f} ms" for v in VARIANTS))
        browser.close()
    print(f"\n{len(_CORES)} cores ({cpu()}), load {load()}, Python {platform.python_version()}")
    print(f"training on cores {sorted(TRAINING_CORES)}, browser on {sorted(BROWSER_CORES)}")
    print(f"{args.rounds} rounds of {args.epochs} epochs; median step time per run, then over rounds\n")
    print("| variant | step (ms) | ratio to plain |")
    print("|---|---:|---:|")
    for variant in VARIANTS:
        ratio = statistics.median(t / p for t, p in zip(times[variant], times["plain"]))
        print(f"| {variant} | {statistics.median(times[variant]) * 1e3:.3f} | {ratio:.4f} |")
    browser_to_served = statistics.median(b / s for b, s in zip(times["browser"], times["served"]))
    print(f"\nbrowser / served: {browser_to_served:.4f}")


if __name__ == "__main__":
    main()
