"""Benchmark what the live dashboard costs a training: step time with one browser attached vs none.

Trains the example workspace (``deepleaps init``: the small CNN on 1,200 generated
images, metrics.csv written every batch, validation and epochs.csv every epoch) with
``deepleaps run`` in three variants, each a process of its own:

* ``plain``: no dashboard;
* ``served``: ``--dashboard``, no page open (the feed asks nothing while none listens);
* ``browser``: ``--dashboard`` with one page open in a headless Chromium (Playwright,
  ``--chromium``), receiving its events (one a second: counters, metric points, the
  journal) and redrawing its graph and curves.

A command in the training's batch loop stamps every batch with the training
process's CPU time (``--clock wall``: wall-clock time); a step's time is the
difference between two stamps. CPU time leaves out the time the process waits for
a CPU, which on a shared machine is most of the noise, and counts every thread of
the process: the dashboard's server thread and feed are charged to the steps they
run beside. The bench waits until the run serves (and, for ``browser``, until the
page shows the training), then counts the steps from one second later, so the
page is attached for every step counted. Per run: the mean step time (the feed
works once a second, so its cost lands on one step in many, which a median would
not see; the epochs' validation is in every variant's mean alike) and the median.
Each round runs the three variants in the same order; the table gives the median
over rounds, and the median over rounds of each variant's ratio to ``plain`` of
the same round.

Step times on a shared machine vary by several per cent from run to run, more
than the cost being measured, so the bench also measures that cost directly:
while a run goes on it reads the CPU time of each of the training process's
threads (``/proc/PID/task/*/stat``), and reports, over the steps counted, the
CPU time of every thread but the training's own (the control server, the
journal's writer, and in the dashboard variants the dashboard's server and feed)
as a share of the training thread's. The dashboard's share is that of a
dashboard variant less that of ``plain`` in the same round; under the GIL its
work can at most hold the training up for as long as it runs, so that share
bounds what it adds to a step. The training uses one thread
(``OMP_NUM_THREADS=1``) on the first core the bench may use, the browser the
others (``sched_setaffinity``), as a browser on a workstation has cores of its
own; what the dashboard does in the training's process (its server thread, the
feed) competes with the training on the training's core.

Usage::

    python bench/dashboard.py                        # 5 rounds of 30 epochs, CPU time
    python bench/dashboard.py --clock wall           # wall-clock time (an idle machine)
    python bench/dashboard.py --rounds 9 --epochs 40
"""

from __future__ import annotations

import argparse
import contextlib
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
"""Stamps every run (a batch) in steps.txt of the run directory: wall-clock time, process CPU time."""

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
        self._file.write(f"{time.time()} {time.process_time()}\\n")
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


def thread_times(pid: int) -> dict[int, float]:
    """CPU seconds (user and system) of each thread of process ``pid`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            times[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return times


def one_run(directory: Path, variant: str, browser, clock: str) -> tuple[float, float, float]:
    """The mean and the median step time (seconds) of one run of ``variant``, and the CPU time of
    the process's other threads as a share of its training thread's, over the steps counted."""
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
    time.sleep(SETTLE)
    first = thread_times(process.pid)
    last = dict(first)
    while process.poll() is None:  # a thread's time as it was last read (a thread that ended is gone)
        with contextlib.suppress(OSError):
            for tid, cpu in thread_times(process.pid).items():
                last[tid] = max(cpu, last.get(tid, 0.0))
        time.sleep(0.2)
    if process.returncode != 0:
        sys.exit(f"{variant}: the training failed:\n{log.read_text()[-2000:]}")
    if page is not None:
        page.close()
    column = 1 if clock == "cpu" else 0
    stamps = [[float(value) for value in line.split()] for line in (run_dir / "steps.txt").read_text().splitlines()]
    steps = [b[column] - a[column] for a, b in itertools.pairwise(stamps) if a[0] >= start]
    if len(steps) < 100:
        sys.exit(f"{variant}: only {len(steps)} steps counted; give more --epochs")
    spent = {tid: cpu - first.get(tid, 0.0) for tid, cpu in last.items()}
    training = spent.pop(process.pid)  # the main thread: the interpreter runs there
    return statistics.fmean(steps), statistics.median(steps), sum(spent.values()) / training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    os.sched_setaffinity(0, BROWSER_CORES)  # the browser (a child of this process) inherits it

    runs: dict[str, list[tuple[float, float, float]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=args.chromium)
        directory = workspace(Path(scratch) / "bench", args.epochs)
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                runs[variant].append(one_run(directory, variant, browser, args.clock))
            shown = (
                f"{v} {mean * 1e3:.3f}/{median * 1e3:.3f} ms {other:.2%}"
                for v in VARIANTS
                for mean, median, other in runs[v][-1:]
            )
            print(f"round {round_ + 1} (mean/median step, other threads): " + ", ".join(shown), flush=True)
        browser.close()
    print(f"\n{len(_CORES)} cores ({cpu()}), load {load()}, Python {platform.python_version()}")
    print(f"training on cores {sorted(TRAINING_CORES)}, browser on {sorted(BROWSER_CORES)}")
    print(f"{args.rounds} rounds of {args.epochs} epochs, {args.clock} time; per run, then the median over rounds\n")
    print("| variant | mean step (ms) | ratio to plain | median step (ms) | ratio to plain |")
    print("|---|---:|---:|---:|---:|")
    for variant in VARIANTS:
        cells = []
        for index in (0, 1):
            ratio = statistics.median(t[index] / p[index] for t, p in zip(runs[variant], runs["plain"]))
            cells += [f"{statistics.median(t[index] for t in runs[variant]) * 1e3:.3f}", f"{ratio:.4f}"]
        print(f"| {variant} | {' | '.join(cells)} |")
    print("\n| variant | other threads' CPU / training thread's | the dashboard's share (less plain's) |")
    print("|---|---:|---:|")
    for variant in VARIANTS:
        share = statistics.median(t[2] for t in runs[variant])
        extra = statistics.median(t[2] - p[2] for t, p in zip(runs[variant], runs["plain"]))
        print(f"| {variant} | {share:.3%} | {extra:.3%} |")


if __name__ == "__main__":
    main()
