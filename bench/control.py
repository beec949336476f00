"""Benchmark the control channel: send-to-applied latency, and what an idle server costs a step.

The training is a cheap program over pre-batched in-memory data (an MLP
128-384-384-10, batch 64, cross-entropy, SGD; about 1 ms a step with one
thread)::

    $root( $EPOCHS( $LOADER( $STEP ) ) )

``LOADER`` a ``DataLoaderCommand`` (``progress: false``) and ``STEP`` a
``RunCommand`` calling the container's ``train_step``; ``EPOCHS`` repeats
the loader until the run is stopped.

Latency: the training runs in a worker process with a ``Controller`` (and
its journal, fsynced per entry, and monitor file, as ``deepleaps run`` has
them) and a ``ControlServer`` on a free loopback port; this process connects
with :class:`deepleaps.control.client.Client` (HELLO + token) and times each
request from sending it to reading its reply — which the server sends only
once the change has been applied at a safe point, journaled and written to
the monitor file. The server's per-connection rate limit is lifted (it is
not what is measured); requests are paced by the engine at
``--change-share`` (``COMMAND_CONTROLLER.change_share``). Requests, one at a
time, each 40 ms after the last reply (isolated: the pacing never makes them
wait):

* ``PING``: answered on the server thread, no safe point (the round trip);
* ``SET optimizer.lr``: a runtime action at the next safe point, journaled;
* ``ADD $LOADER( *PrintCommand[…] )`` alternating with ``REMOVE`` of the
  node it added: a plan patch (parse, resolve, diff, check, compile, install,
  journal, monitor). The ADD and REMOVE rows and their union are reported.

Then ``--burst-rounds`` times: two seconds without requests and a burst of
``--patches`` ADD/REMOVE back to back (each sent as soon as the last is
answered); then two seconds without. The worker stamps every batch it
fetches: for each burst, the median step during it over the median step of
the quiet seconds before and after it (the machine's pace drifts by a tenth
within seconds; target ≤ 1.25, the median over the bursts), the bursts'
patches a second and their send-to-applied. By default the latency run is made for the default pacing and unpaced
(``--change-share 0.05 1``), each with the run directory in the temporary
directory (on a disk, the journal's fsync is part of every journaled change)
and in ``/dev/shm`` (tmpfs: fsync costs nothing), which separates the
journal's share from the rest.

Growth with the size of the program (``--sizes 10 1000 10000``): the latency run
again, isolated ADD and REMOVE only, once per size N, with the program padded by a graph
``REPORT`` of N ``PrintCommand`` nodes after the training, which never runs
while it trains: ADD + REMOVE p50 and p99 per size, and the ratio of the p50 at
the largest size to that at the smallest (target ≤ 2: a patch costs in
proportion to what it changes, not to the program). The sizes are run one
after the other in each of ``--size-rounds`` rounds, ``--isolated`` split
between the rounds, so that a change in the machine's load falls on all.

Idle cost: the same training, one epoch of ``--steps`` timed batches, run
in this process in four variants, interleaved round by round (the order
rotates each round):

* ``bare``: an ``Interpreter`` alone;
* ``bare-2``: the same again; the spread of bare-2/bare is the noise floor;
* ``engine``: + a ``Controller`` with its journal and monitor file (what
  ``deepleaps run --no-server`` and ``App(..., serve=False)`` have);
* ``server``: + a started ``ControlServer`` with no client (``deepleaps run``).

The time per step is the median of the per-batch times of a run; the CPU
time per step is the process's CPU time (all threads) over the timed steps
divided by their number, which a busy machine disturbs less than wall-clock
time. The table gives the median over rounds, and the median (and quartiles)
over rounds of the ratio to the ``bare`` run of the same round. The target is
a median wall ratio ``server``/``bare`` ≤ 1.01. The two things an idle server
adds are also measured directly: ``Controller.on_safe_point`` timed alone (a
tight loop of calls at one safe point), and the CPU time of the server's
thread (``/proc/self/task/ID/schedstat``) as a share of the run's time.
All runs must end with the same parameters.

Usage::

    python bench/control.py                      # about 7 minutes on 2 idle cores
    python bench/control.py --only latency --change-share 0.05 0.1 1
    python bench/control.py --only idle          # or: --only latency
    python bench/control.py --only idle --variants bare,server --rounds 30 --steps 1000
    python bench/control.py --profile            # cProfile of the server variant
    python bench/control.py --sizes 10 1000 10000 --isolated 1200 --latency-in /dev/shm
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import itertools
import json
import logging
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import cores, cpu, load
from torch import nn
from torch.utils.data import Dataset

SEED = 20240501
LR = 0.01
SIZES = (128, 384, 384, 10)
BATCH = 64
#: Batches in the worker's data set (one epoch); the worker loops over epochs until STOP.
WORKER_BATCHES = 256
#: Target of the idle cost: server / bare.
TARGET = 1.01
#: Seconds between the requests whose latency is measured alone (their pacing never waits).
GAP = 0.04
#: Seconds without requests before and after each burst of patches: the idle steps.
QUIET = 2.0
#: Target of the median step during a back-to-back burst of patches over the idle step.
BURST_TARGET = 1.25
#: Target of the growth of ADD + REMOVE latency from the smallest to the largest program of ``--sizes``.
SIZE_TARGET = 2.0

PROGRAM = """\
DEFAULT:
  - $root( $EPOCHS( $LOADER( $STEP ) ) )
DEFINE:
  EPOCHS:
    command: Graph
    repeat: {epochs}
  LOADER:
    command: DataLoaderCommand
    args: {{loader: train, progress: false}}
  STEP:
    command: RunCommand
    args: {{method: train_step}}
"""

TRAINING = "$root( $EPOCHS( $LOADER( $STEP ) ) )"
ADD = 'ADD $LOADER( *PrintCommand[content="x", run_cycle="LOADER.step:1000000"] )'


# ---- the training ------------------------------------------------------------------------


def make_model() -> nn.Module:
    torch.manual_seed(SEED)
    layers: list[nn.Module] = []
    for index, (inputs, outputs) in enumerate(itertools.pairwise(SIZES)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class Batches(Dataset):
    """Pre-batched data; item ``i`` is batch ``i``.

    Every fetch appends the wall-clock time to ``stamps`` and the process's CPU time to ``cpu``.
    """

    def __init__(self, count: int):
        generator = torch.Generator().manual_seed(SEED + 1)
        inputs = torch.randn(count, BATCH, SIZES[0], generator=generator)
        targets = torch.randint(0, SIZES[-1], (count, BATCH), generator=generator)
        self.batches = [(inputs[i], targets[i]) for i in range(count)]
        self.stamps: list[float] = []
        self.cpu: list[float] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        self.stamps.append(time.monotonic())
        self.cpu.append(time.process_time())
        return self.batches[index]


_CURRENT: dict[str, Batches] = {}


def current_data() -> Batches:
    """The data set of the run under way (what the container config names)."""
    return _CURRENT["data"]


_COMPILED: dict[tuple[int, int], object] = {}


def program_text(epochs: int, pad: int = 0) -> str:
    """The training program; with ``pad``, followed by a graph ``REPORT`` of that many
    ``PrintCommand`` nodes, which never runs while the training does."""
    text = PROGRAM.format(epochs=epochs)
    if not pad:
        return text
    spare = ", ".join(f'*PrintCommand[content="r{index}"]' for index in range(pad))
    text = text.replace(TRAINING, f"{TRAINING[:-2]} -> $REPORT( {spare} ) )")
    return text + "  REPORT:\n    command: Graph\n"


def compiled(epochs: int, pad: int = 0):
    if (epochs, pad) not in _COMPILED:
        import deepleaps.runtime.commands
        import deepleaps.train.commands  # noqa: F401 - registers the training commands
        from deepleaps.compiler import compile_file
        from deepleaps.lang.programfile import load_program_file

        program = load_program_file("control.yaml", program_text(epochs, pad))
        _COMPILED[epochs, pad] = compile_file(program, roots=(Path.cwd(),))
    return _COMPILED[epochs, pad]


def build_training(data: Batches, epochs: int, run_dir: Path | None, pad: int = 0):
    """Container and interpreter for one run over ``data`` (``epochs`` -1: until stopped)."""
    from deepleaps.runtime import Interpreter
    from deepleaps.train.container import TrainerContainer

    _CURRENT["data"] = data
    here = __name__
    container = TrainerContainer(
        {
            "device": "cpu",
            "model": {"class": f"{here}.make_model"},
            "optimizer": {"name": "SGD", "lr": LR},
            "loss": {"name": "CrossEntropyLoss"},
            "data": {"train": {"dataset": {"class": f"{here}.current_data"}, "loader": {"batch_size": None}}},
        }
    )
    variables = {"main": container}
    if run_dir is not None:
        variables["base"] = str(run_dir)
    interpreter = Interpreter(compiled(epochs, pad).plan, variables=variables)
    interpreter.context.container = container
    return container, interpreter


def attach_control(
    interpreter, epochs: int, run_dir: Path, workspace: Path, serve: bool, pad: int = 0, share: float = 1.0
):
    """The patch engine as ``App`` builds it (journal, monitor file, pacing at ``share``) and,
    if ``serve``, its server."""
    from deepleaps.compiler import REGISTRY
    from deepleaps.control.engine import Controller
    from deepleaps.control.journal import FILE, Journal
    from deepleaps.control.pacing import Pacing
    from deepleaps.control.server import ControlServer, ServerSettings

    run_dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        interpreter,
        compiled(epochs, pad).source,  # what patches are diffed against
        registry=REGISTRY,
        roots=(Path.cwd(),),
        run_dir=run_dir,
        journal=Journal(run_dir / FILE),
        workspace=workspace,
        pacing=Pacing(share),
    )
    server = None
    if serve:
        # The engine's pacing, not the per-connection rate limit (100 requests a second by
        # default, docs/security.md), which a burst of back-to-back requests would measure.
        settings = ServerSettings(ipc_port=0, max_requests_per_second=1e6)
        server = ControlServer(controller, settings, workspace).start()
    return controller, server


def parameters_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# ---- (a) latency: the worker process -------------------------------------------------------


def worker(workspace: Path, pad: int = 0, share: float = 1.0) -> int:
    """Train until STOP with the control server on; write the batch stamps to ``stamps.json``."""
    torch.set_num_threads(1)
    logging.getLogger("deepleaps").setLevel(logging.ERROR)
    data = Batches(WORKER_BATCHES)
    run_dir = workspace / "run"
    _, interpreter = build_training(data, -1, run_dir, pad)
    controller, server = attach_control(interpreter, -1, run_dir, workspace, serve=True, pad=pad, share=share)
    try:
        interpreter.run()
    finally:
        controller.close()
        server.close()
    (workspace / "stamps.json").write_text(json.dumps(data.stamps))
    return 0


def measure_latency(
    where: str, *, isolated: int, others: int = 0, burst: int = 0, rounds: int = 1, pad: int = 0, share: float = 1.0
):
    """One worker with its workspace and run directory (and so its journal) under ``where``,
    the program padded with ``pad`` nodes (see :func:`program_text`), requests paced at
    ``share``: ``others`` isolated PING and SET each, ``isolated`` isolated ADD/REMOVE, then
    ``rounds`` times a quiet time and a burst of ``burst`` ADD/REMOVE back to back."""
    from deepleaps.control.client import Client

    with tempfile.TemporaryDirectory(prefix="deepleaps-control-", dir=where) as directory:
        workspace = Path(directory)
        filesystem = filesystem_of(workspace)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(workspace)]
        process = subprocess.Popen(
            [*command, "--pad", str(pad), "--change-share", str(share)],
            stdout=subprocess.DEVNULL,
        )
        info = workspace / ".deepleaps" / "control.json"
        deadline = time.monotonic() + 120
        while not info.is_file() or not info.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the training worker did not start its control server")
            time.sleep(0.05)
        rows: dict[str, list[float]] = {}
        bursts: list[tuple[float, float]] = []
        with Client(workspace=workspace) as client:
            while "LOADER" not in client.send("STATUS")["data"]["position"]:
                time.sleep(0.05)  # the first batches

            def timed(label: str, verb: str, payload: str = "", gap: float = 0.0) -> dict:
                start = time.perf_counter()
                reply = client.send(verb, payload)
                rows.setdefault(label, []).append(time.perf_counter() - start)
                if not reply.get("ok"):
                    raise SystemExit(f"{verb} {payload} failed: {reply.get('message')}")
                time.sleep(gap)
                return reply

            def patch(label: str, gap: float = 0.0) -> None:
                verb, _, payload = ADD.partition(" ")
                reply = timed(f"ADD{label}", verb, payload, gap)
                added = next(op["name"] for op in reply["script"]["operations"] if op["op"] == "add_node")
                timed(f"REMOVE{label}", "REMOVE", added, gap)

            for _ in range(others):
                timed("PING", "PING", gap=GAP)
            for index in range(others):
                timed("SET optimizer.lr", "SET", f"optimizer.lr {LR * (1 + (index % 2) * 1e-9)!r}", GAP)
            for _ in range(isolated // 2):
                patch("", GAP)
            for _ in range(rounds if burst else 0):  # quiet, burst, …, quiet
                time.sleep(QUIET)
                start = time.monotonic()
                for _ in range(burst // 2):
                    patch(" (burst)")
                bursts.append((start, time.monotonic()))
            time.sleep(QUIET if burst else 0)
            stop = client.send("STOP")
            if not stop.get("ok"):
                raise SystemExit(f"STOP failed: {stop.get('message')}")
        if process.wait(timeout=60) != 0:
            raise SystemExit("the training worker failed")
        stamps = json.loads((workspace / "stamps.json").read_text())
        journal = (workspace / "run" / "journal.jsonl").read_text().splitlines()
    for label in ("", " (burst)"):
        if f"ADD{label}" in rows:
            rows[f"ADD + REMOVE{label}"] = rows[f"ADD{label}"] + rows[f"REMOVE{label}"]
    steps: dict[str, list] = {"idle": [], "burst": [], "ratios": [], "seconds": []}
    for start, end in bursts:
        # The quiet seconds before and after the burst: the machine's pace drifts meanwhile.
        windows = ((start - QUIET, start), (end, end + QUIET))
        quiet = [b - a for a, b in itertools.pairwise(stamps) if any(s <= a and b <= e for s, e in windows)]
        busy = [b - a for a, b in itertools.pairwise(stamps) if start <= a and b <= end]
        steps["idle"] += quiet
        steps["burst"] += busy
        steps["ratios"].append(statistics.median(busy) / statistics.median(quiet))
        steps["seconds"].append(end - start)
    where = f"{where} ({filesystem})"
    return {"rows": rows, "steps": steps, "journal": len(journal), "where": where, "pad": pad, "share": share}


def filesystem_of(path: Path) -> str:
    """The type of the file system ``path`` is on (from /proc/mounts), or '?'."""
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            point = fields[1]
            inside = str(path.resolve()).startswith(point.rstrip("/") + "/") or point == "/"
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


# ---- (b) idle cost: in this process ---------------------------------------------------------

#: ``bare-2`` is ``bare`` again: the spread of bare-2/bare is the noise floor of the ratios.
VARIANTS = ("bare", "bare-2", "engine", "server")


def thread_cpu(native_id: int) -> float:
    """CPU seconds a thread of this process has used (Linux: /proc/self/task/ID/schedstat), or nan."""
    try:
        return int(Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def time_one(variant: str, steps: int, warmup: int, scratch: Path) -> dict:
    """One run: wall-clock seconds of each timed step, CPU seconds per step (all threads), the
    server thread's CPU seconds and the run's wall-clock seconds, the final parameters."""
    data = Batches(warmup + steps + 1)
    container, interpreter = build_training(data, 1, scratch / "run")
    controller = server = None
    if variant in ("engine", "server"):
        controller, server = attach_control(interpreter, 1, scratch / "run", scratch, serve=variant == "server")
    gc.collect()
    server_cpu = thread_cpu(server._thread.native_id) if server is not None else 0.0
    started = time.monotonic()
    try:
        interpreter.run()
        elapsed = time.monotonic() - started
        if server is not None:
            server_cpu = thread_cpu(server._thread.native_id) - server_cpu
    finally:
        if controller is not None:
            controller.close()
        if server is not None:
            server.close()
    times = data.stamps[warmup : warmup + steps + 1]
    return {
        "durations": [end - start for start, end in itertools.pairwise(times)],
        "cpu": (data.cpu[warmup + steps] - data.cpu[warmup]) / steps,
        "server_cpu": server_cpu,
        "elapsed": elapsed,
        "final": parameters_of(container.model),
    }


def measure_idle(
    steps: int, rounds: int, warmup: int, variants: tuple[str, ...] = VARIANTS
) -> dict[str, dict[str, list[float]]]:
    """Per variant, one entry per round: the median wall-clock and the mean CPU seconds per step
    (and, for ``server``, the share of the run's time its thread was on a CPU)."""
    runs: dict[str, dict[str, list[float]]] = {
        variant: {"wall": [], "cpu": [], "server_share": []} for variant in variants
    }
    reference = None
    with tempfile.TemporaryDirectory(prefix="deepleaps-control-") as directory:
        scratch = Path(directory)
        for variant in variants:  # untimed: imports, first allocations
            time_one(variant, 100, 0, scratch)
        for number in range(rounds):
            order = variants[number % len(variants) :] + variants[: number % len(variants)]
            for variant in order:
                result = time_one(variant, steps, warmup, scratch)
                if reference is None:
                    reference = result["final"]
                elif not torch.equal(result["final"], reference):
                    raise SystemExit(f"{variant} ends with other parameters than the first run")
                runs[variant]["wall"].append(statistics.median(result["durations"]))
                runs[variant]["cpu"].append(result["cpu"])
                runs[variant]["server_share"].append(result["server_cpu"] / result["elapsed"])
            line = ", ".join(
                f"{variant} {runs[variant]['wall'][-1] * 1e6:.1f} ({runs[variant]['cpu'][-1] * 1e6:.1f} CPU)"
                for variant in variants
            )
            print(f"idle round {number + 1}/{rounds}, µs/step: {line}", file=sys.stderr, flush=True)
    return runs


def hook_cost(calls: int = 200_000) -> float:
    """Seconds per call of ``Controller.on_safe_point`` with nothing queued (monitor file due once a second)."""
    with tempfile.TemporaryDirectory(prefix="deepleaps-control-") as directory:
        scratch = Path(directory)
        _, interpreter = build_training(Batches(1), 1, scratch / "run")
        controller, _ = attach_control(interpreter, 1, scratch / "run", scratch, serve=False)
        node = interpreter.plan[interpreter.plan.root]
        hook = controller.on_safe_point
        for _ in range(1000):
            hook(interpreter, node)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                hook(interpreter, node)
            best = min(best, (time.perf_counter() - start) / calls)
        return best


def profile(steps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="deepleaps-control-") as directory:
        scratch = Path(directory)
        time_one("server", 100, 0, scratch)
        profiler = cProfile.Profile()
        profiler.enable()
        time_one("server", steps, 0, scratch)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


# ---- report ---------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{cpu()}, {cores()} cores, Python {platform.python_version()}, torch {torch.__version__}; "
        f"load average {load()}"
    )


def report_latency(results: list[dict]) -> None:
    print(f"\n### Send to applied, requests {GAP * 1e3:.0f} ms apart (ms)\n")
    print("| run directory (journal) | pacing share | request | n | p50 | p99 | max |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for result in results:
        for label, values in result["rows"].items():
            if "(burst)" in label:
                continue
            ms = [value * 1e3 for value in values]
            print(
                f"| {result['where']} | {result['share']} | {label} | {len(ms)} | {percentile(ms, 0.5):.2f} | "
                f"{percentile(ms, 0.99):.2f} | {max(ms):.2f} |"
            )
    print("\n### Step time of the worker during a burst of back-to-back patches (ms)\n")
    print(
        "| run directory (journal) | pacing share | idle: median step | during the bursts: median step "
        f"| ratio per burst (target ≤ {BURST_TARGET}): median (min–max) | p99 step | patches a second "
        "| send to applied p50 / p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        steps = result["steps"]
        idle, burst, ratios = steps["idle"], steps["burst"], steps["ratios"]
        latency = [value * 1e3 for value in result["rows"]["ADD + REMOVE (burst)"]]
        print(
            f"| {result['where']} | {result['share']} | {statistics.median(idle) * 1e3:.3f} ({len(idle)} steps) | "
            f"{statistics.median(burst) * 1e3:.3f} ({len(burst)} steps) | "
            f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{percentile(burst, 0.99) * 1e3:.3f} | {len(latency) / sum(steps['seconds']):.0f} | "
            f"{percentile(latency, 0.5):.2f} / {percentile(latency, 0.99):.2f} |"
        )


def report_sizes(results: list[dict]) -> None:
    """ADD + REMOVE latency by size of the program, and how much it grows from the smallest to the largest."""
    print("\n### ADD + REMOVE by size of the program (ms)\n")
    print("| run directory (journal) | padding nodes | n | p50 | p99 |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        ms = [value * 1e3 for value in result["rows"]["ADD + REMOVE"]]
        print(
            f"| {result['where']} | {result['pad']:,} | {len(ms)} | {percentile(ms, 0.5):.2f} | "
            f"{percentile(ms, 0.99):.2f} |"
        )
    for where in dict.fromkeys(result["where"] for result in results):
        runs = sorted((r for r in results if r["where"] == where), key=lambda r: r["pad"])
        small, large = (statistics.median(run["rows"]["ADD + REMOVE"]) for run in (runs[0], runs[-1]))
        ratio = large / small
        print(
            f"\n{where}: p50 at {runs[-1]['pad']:,} padding nodes / at {runs[0]['pad']:,} = {ratio:.2f} "
            f"(target ≤ {SIZE_TARGET}: {'met' if ratio <= SIZE_TARGET else 'NOT met'})"
        )


def report_idle(runs: dict[str, dict[str, list[float]]], hook: float) -> bool:
    def ratios(variant: str, key: str) -> list[float]:
        return [value / bare for value, bare in zip(runs[variant][key], runs["bare"][key], strict=True)]

    def spread(values: list[float]) -> str:
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return f"{statistics.median(values):.4f} ({quartiles[0]:.3f}–{quartiles[2]:.3f})"

    print(f"\n### Idle control server: time per step ({len(runs['bare']['wall'])} rounds)\n")
    print(
        "| variant | wall µs/step (median) | ratio to bare: median (IQR) "
        "| CPU µs/step (mean, all threads) | ratio to bare: median (IQR) |"
    )
    print("|---|---:|---:|---:|---:|")
    for variant in runs:
        wall, cpu = statistics.median(runs[variant]["wall"]), statistics.median(runs[variant]["cpu"])
        print(
            f"| {variant} | {wall * 1e6:.1f} | {spread(ratios(variant, 'wall'))} | "
            f"{cpu * 1e6:.1f} | {spread(ratios(variant, 'cpu'))} |"
        )
    step = statistics.median(runs["bare"]["wall"])
    share = statistics.median(runs["server"]["server_share"])
    ratio = statistics.median(ratios("server", "wall"))
    met = ratio <= TARGET
    print(
        f"\nDirect costs: `Controller.on_safe_point` {hook * 1e6:.3f} µs per call = {hook / step * 100:.3f}% "
        f"of a step; the idle server thread on a CPU {share * 100:.4f}% of the time.\n"
        f"Target server/bare ≤ {TARGET} (median wall ratio): {'met' if met else 'NOT met'} ({ratio:.4f})."
    )
    return met


def main(argv: list[str] | None = None) -> int:
    from deepleaps.control.server import ServerSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("latency", "idle"))
    parser.add_argument("--patches", type=int, default=1000, help="ADD and REMOVE requests of the burst, in all")
    parser.add_argument("--burst-rounds", type=int, default=3, help="bursts per latency run, each between quiet times")
    parser.add_argument(
        "--isolated", type=int, default=200, help=f"ADD and REMOVE requests {GAP * 1e3:.0f} ms apart, in all"
    )
    parser.add_argument("--others", type=int, default=100, help=f"PING and SET requests {GAP * 1e3:.0f} ms apart, each")
    parser.add_argument(
        "--change-share",
        nargs="+",
        type=float,
        default=[ServerSettings().change_share, 1.0],
        metavar="SHARE",
        help="the pacing of requests (COMMAND_CONTROLLER.change_share), one latency run each "
        "(default: the default, then 1: unpaced)",
    )
    parser.add_argument("--steps", type=int, default=1500, help="timed steps per idle-cost run")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"idle-cost variants, comma-separated, from {', '.join(VARIANTS)}; bare and server are always run",
    )
    parser.add_argument(
        "--latency-in",
        nargs="+",
        default=[tempfile.gettempdir(), "/dev/shm"],
        metavar="DIR",
        help="where the worker's run directory (and so its journal) goes, one latency run each "
        "(default: the temporary directory, then /dev/shm: tmpfs, where fsync costs nothing)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        metavar="N",
        help="latency only: one run per N, the program padded with a graph of N nodes that never runs",
    )
    parser.add_argument("--size-rounds", type=int, default=3, help="with --sizes: rounds over the sizes")
    parser.add_argument("--profile", action="store_true", help="profile the server variant and exit")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pad", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.pad, args.change_share[0])
    torch.set_num_threads(1)
    logging.getLogger("deepleaps").setLevel(logging.ERROR)
    if args.profile:
        profile(args.steps)
        return 0
    started = time.monotonic()
    print(f"start: {machine()}", file=sys.stderr, flush=True)
    if args.sizes:
        places = [where for where in args.latency_in if Path(where).is_dir()]
        sized: dict[tuple[str, int], dict] = {}
        for number in range(args.size_rounds):  # sizes side by side in each round, against the load's drift
            for where in places:
                for pad in args.sizes:
                    result = measure_latency(where, isolated=args.isolated // args.size_rounds, pad=pad)
                    merged = sized.setdefault((where, pad), result | {"rows": {"ADD + REMOVE": []}})
                    merged["rows"]["ADD + REMOVE"] += result["rows"]["ADD + REMOVE"]
            print(f"sizes round {number + 1}/{args.size_rounds} done", file=sys.stderr, flush=True)
        print(f"\n{machine()}; torch threads 1; {time.monotonic() - started:.0f} s")
        report_sizes(list(sized.values()))
        return 0
    latency = None
    if args.only != "idle":
        places = [where for where in args.latency_in if Path(where).is_dir()]
        latency = [
            measure_latency(
                where,
                isolated=args.isolated,
                others=args.others,
                burst=args.patches,
                rounds=args.burst_rounds,
                share=share,
            )
            for where in places
            for share in args.change_share
        ]
    chosen = {name.strip() for name in args.variants.split(",")} | {"bare", "server"}
    unknown = chosen - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; variants are {', '.join(VARIANTS)}")
    variants = tuple(variant for variant in VARIANTS if variant in chosen)
    runs = measure_idle(args.steps, args.rounds, args.warmup, variants) if args.only != "latency" else None
    hook = hook_cost() if runs is not None else 0.0
    print(f"\n{machine()}; torch threads 1; {time.monotonic() - started:.0f} s")
    if latency is not None:
        report_latency(latency)
    met = True
    if runs is not None:
        met = report_idle(runs, hook)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
