"""Benchmark the per-step overhead of the training loop: deepleaps against a plain PyTorch loop.

Trains the same model on the same data, from the same seed, with:

* ``plain``: a hand-written loop over the DataLoader (``.to(device)``,
  forward, loss, ``zero_grad``, backward, ``optimizer.step``,
  ``loss.item()``, a print every 100 steps; ``model.train()`` once);
* ``plain_train``: the same calling ``model.train()`` every step, and
  ``train_step``: the same calling the deepleaps container's ``train_step``
  instead of its own body — what the container's step costs by itself;
* ``deepleaps``: the program ``$root( $LOADER( $STEP, $PRINT ) )`` —
  ``LOADER`` a ``DataLoaderCommand`` (``progress: false``), ``STEP`` a
  ``RunCommand`` calling the container's ``train_step``, ``PRINT`` a
  ``PrintCommand`` of ``$main.last_loss`` with ``run_cycle: LOADER.step:100``;
* ``ignite``: ``create_supervised_trainer`` (if pytorch-ignite is installed),
  printing every 100 iterations;
* ``lightning``: ``Trainer`` with logger, checkpointing, progress bar and
  model summary off (if lightning is installed), printing every 100 steps;
* with ``--against REV``: the deepleaps program run by the deepleaps package
  of git revision REV (``deepleaps@REV``) and of the working tree
  (``deepleaps@worktree``), each in a worker process of its own, so that
  both run in the same conditions (the main process has imported Ignite and
  Lightning).

Configurations: ``tiny`` (Linear(32,32)-ReLU-Linear(32,1), MSE, batch 16),
``small`` (256-512-512-10 with ReLUs, cross-entropy, batch 128), both with
SGD (lr 0.01), and ``loop``: the tiny configuration's data with steps that
do nothing (an empty loop body; a container whose ``train_step`` only sets
``last_loss``; an Ignite ``Engine`` whose step returns 0; a Lightning module
with manual optimisation whose ``training_step`` returns None) — what the
loop machinery itself costs. The data is pre-batched (the DataLoader has
``batch_size=None``), so loading costs little and the figures show the loop.

Each round runs every variant once, in the same order (ABAB…), with a fresh
model, optimizer and DataLoader; ``torch.set_num_threads(1)``; an untimed
round comes first. The data set stamps the process's CPU time (``--clock
wall``: wall time) whenever a batch is fetched, so a step's time is the
difference between two fetches, and setup, warm-up (``--warmup`` steps) and
teardown are not counted; CPU time leaves out the time the process waits
for a CPU, which on a shared machine is most of the noise. Per run: the
median time per step (and the mean, which includes the print every 100
steps and garbage collections). The table gives the median over rounds of
those, the median over rounds of the difference to the plain loop of the
same round with half its interquartile range, and the median ratio. Every
variant must end with the plain loop's parameters, or the run stops.

Usage::

    python bench/overhead.py
    python bench/overhead.py --configs tiny --steps 5000 --rounds 15
    python bench/overhead.py --against HEAD~1          # before/after, side by side
    python bench/overhead.py --profile tiny            # cProfile of the deepleaps variant
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
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from common import cores, cpu
from torch import nn
from torch.utils.data import DataLoader, Dataset

SEED = 20240501
LR = 0.01
PRINT_EVERY = 100

#: name -> layer sizes, batch size, loss; ``loop`` is the tiny MLP's data with steps that do nothing.
CONFIGS = {
    "tiny": {"sizes": (32, 32, 1), "batch": 16, "loss": "MSELoss", "train": True},
    "small": {"sizes": (256, 512, 512, 10), "batch": 128, "loss": "CrossEntropyLoss", "train": True},
    "loop": {"sizes": (32, 32, 1), "batch": 16, "loss": "MSELoss", "train": False},
}
#: Overhead targets of the deepleaps variant (ratio to the plain loop).
TARGETS = {"tiny": 1.03, "small": 1.01}
#: Default steps and rounds per configuration (about 3 minutes in all on 2 cores).
DEFAULT_STEPS = {"tiny": 3000, "small": 100, "loop": 3000}
DEFAULT_ROUNDS = {"tiny": 9, "small": 9, "loop": 9}

PROGRAM = """\
DEFAULT:
  - $root( $LOADER( $STEP, $PRINT ) )
DEFINE:
  LOADER:
    command: DataLoaderCommand
    args: {loader: train, progress: false}
  STEP:
    command: RunCommand
    args: {method: train_step}
  PRINT:
    command: PrintCommand
    args: {content: $main.last_loss}
    run_cycle: LOADER.step:100
"""


# ---- model and data ------------------------------------------------------------------


def make_model(config: str) -> nn.Module:
    """The configuration's MLP, always with the same initial weights."""
    torch.manual_seed(SEED)
    sizes = CONFIGS[config]["sizes"]
    layers: list[nn.Module] = []
    for index, (inputs, outputs) in enumerate(itertools.pairwise(sizes)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


def make_loss(config: str) -> nn.Module:
    return getattr(nn, CONFIGS[config]["loss"])()


class Batches(Dataset):
    """Pre-batched data; item ``i`` is batch ``i``. Stamps the time each batch is fetched."""

    def __init__(self, config: str, count: int):
        spec = CONFIGS[config]
        generator = torch.Generator().manual_seed(SEED + 1)
        inputs = torch.randn(count, spec["batch"], spec["sizes"][0], generator=generator)
        if spec["loss"] == "MSELoss":
            targets = torch.randn(count, spec["batch"], 1, generator=generator)
        else:
            targets = torch.randint(0, spec["sizes"][-1], (count, spec["batch"]), generator=generator)
        self.batches = [(inputs[i], targets[i]) for i in range(count)]
        self.times = [0.0] * count

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        self.times[index] = CLOCK()
        return self.batches[index]


#: What the data set stamps: the process's CPU time (``--clock cpu``) or wall time (``--clock wall``).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = CLOCKS["cpu"]

_CURRENT: dict[str, Batches] = {}


def current_data() -> Batches:
    """The data set of the run under way (what the deepleaps container config names)."""
    return _CURRENT["data"]


def loader_of(data: Batches) -> DataLoader:
    return DataLoader(data, batch_size=None, shuffle=False)


# ---- the variants: each trains one epoch over ``data`` and returns the final parameters ----


def run_plain(config: str, data: Batches, *, train_mode_every_step: bool = False) -> torch.Tensor:
    model = make_model(config)
    loss_fn = make_loss(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = loader_of(data)
    device = torch.device("cpu")
    model.train()
    step = 0
    if not CONFIGS[config]["train"]:
        for _batch in loader:
            step += 1
            if step % PRINT_EVERY == 0:
                print(f"[LOADER step {step}] 0.0", flush=True)
        return parameters_of(model)
    for inputs, targets in loader:
        if train_mode_every_step:
            model.train()
        inputs, targets = inputs.to(device), targets.to(device)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last_loss = loss.item()
        step += 1
        if step % PRINT_EVERY == 0:
            print(f"[LOADER step {step}] {last_loss}", flush=True)
    return parameters_of(model)


def run_plain_train(config: str, data: Batches) -> torch.Tensor:
    """The plain loop calling ``model.train()`` every step, as the container's ``train_step`` does."""
    return run_plain(config, data, train_mode_every_step=True)


def run_train_step(config: str, data: Batches) -> torch.Tensor:
    """The plain loop calling the deepleaps container's ``train_step``: the container's share of the overhead."""
    container = make_container(config, data)
    for step, batch in enumerate(loader_of(data), start=1):
        container.sample = batch
        container.train_step()
        if step % PRINT_EVERY == 0:
            print(f"[LOADER step {step}] {container.last_loss}", flush=True)
    return parameters_of(container.model)


_PLANS: dict[str, object] = {}


def deepleaps_plan():
    """The compiled program (compiled once per process)."""
    if "plan" not in _PLANS:
        import deepleaps.runtime.commands
        import deepleaps.train.commands  # noqa: F401 - registers the training commands
        from deepleaps.compiler import compile_file
        from deepleaps.lang.programfile import load_program_file

        program = load_program_file("overhead.yaml", PROGRAM)
        _PLANS["plan"] = compile_file(program, roots=(Path.cwd(),)).plan
    return _PLANS["plan"]


def make_container(config: str, data: Batches):
    from deepleaps.train.container import TrainerContainer

    class LoopContainer(TrainerContainer):
        def train_step(self) -> float:
            self.last_loss = 0.0
            return self.last_loss

    here = __name__
    _CURRENT["data"] = data
    cls = TrainerContainer if CONFIGS[config]["train"] else LoopContainer
    return cls(
        {
            "device": "cpu",
            "model": {"class": f"{here}.make_model", "args": {"config": config}},
            "optimizer": {"name": "SGD", "lr": LR},
            "loss": {"name": CONFIGS[config]["loss"]},
            "data": {"train": {"dataset": {"class": f"{here}.current_data"}, "loader": {"batch_size": None}}},
        }
    )


def run_deepleaps(config: str, data: Batches) -> torch.Tensor:
    from deepleaps.runtime import Interpreter

    container = make_container(config, data)
    interpreter = Interpreter(deepleaps_plan(), variables={"main": container})
    interpreter.context.container = container
    interpreter.run()
    return parameters_of(container.model)


def run_ignite(config: str, data: Batches) -> torch.Tensor:
    from ignite.engine import Engine, Events, create_supervised_trainer

    model = make_model(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if CONFIGS[config]["train"]:
        trainer = create_supervised_trainer(model, optimizer, make_loss(config))
    else:
        trainer = Engine(lambda engine, batch: 0.0)

    @trainer.on(Events.ITERATION_COMPLETED(every=PRINT_EVERY))
    def show(engine):
        print(f"[LOADER step {engine.state.iteration}] {engine.state.output}", flush=True)

    trainer.run(loader_of(data), max_epochs=1)
    return parameters_of(model)


def run_lightning(config: str, data: Batches) -> torch.Tensor:
    import lightning as L

    train = CONFIGS[config]["train"]

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = make_model(config)
            self.loss_fn = make_loss(config)
            self.automatic_optimization = train

        def training_step(self, batch, batch_idx):
            if not train:
                if (batch_idx + 1) % PRINT_EVERY == 0:
                    print(f"[LOADER step {batch_idx + 1}] 0.0", flush=True)
                return None
            inputs, targets = batch
            loss = self.loss_fn(self.model(inputs), targets)
            if (batch_idx + 1) % PRINT_EVERY == 0:
                print(f"[LOADER step {batch_idx + 1}] {loss.item()}", flush=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.model.parameters(), lr=LR)

    module = Module()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    trainer.fit(module, loader_of(data))
    return parameters_of(module.model)


VARIANTS: dict[str, Callable[[str, Batches], torch.Tensor]] = {
    "plain": run_plain,
    "plain_train": run_plain_train,
    "train_step": run_train_step,
    "deepleaps": run_deepleaps,
    "ignite": run_ignite,
    "lightning": run_lightning,
}
_MODULES = {"ignite": "ignite", "lightning": "lightning"}
#: Variants that only differ from the plain loop in how they train (left out of ``loop``).
TRAINING_ONLY = ("plain_train", "train_step")


def parameters_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


def available(name: str) -> bool:
    if name not in _MODULES:
        return True
    try:
        __import__(_MODULES[name])
    except ImportError:
        return False
    return True


def quiet_frameworks() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "ignite"):
        logging.getLogger(name).setLevel(logging.ERROR)


def time_one(variant: str, config: str, steps: int, warmup: int) -> tuple[list[float], torch.Tensor]:
    """The seconds each timed step of one run of ``variant`` took, and the final parameters."""
    data = Batches(config, warmup + steps + 1)
    gc.collect()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        final = VARIANTS[variant](config, data)
    times = data.times[warmup : warmup + steps + 1]
    return [end - start for start, end in itertools.pairwise(times)], final


# ---- another revision of deepleaps, in a worker process ------------------------------


class Worker:
    """This script run with ``--worker``: deepleaps in a process of its own, from git revision
    ``rev`` or (``rev`` None) from the working tree, answering one run per request."""

    def __init__(self, rev: str | None, clock: str):
        self.rev = rev
        self.directory = tempfile.TemporaryDirectory(prefix="deepleaps-")
        root = Path(__file__).resolve().parent.parent
        source = root
        if rev is not None:
            archive = subprocess.run(
                ["git", "archive", "--format=tar", rev], cwd=root, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", self.directory.name], input=archive, check=True)
            source = Path(self.directory.name)
        path = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--clock", clock],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        where = self.request({"where": True})["where"]
        if not where.startswith(str(source)):
            raise SystemExit(f"the worker for {rev or 'the working tree'} imported deepleaps from {where}")

    def request(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def time_one(self, config: str, steps: int, warmup: int) -> tuple[list[float], torch.Tensor]:
        answer = self.request({"config": config, "steps": steps, "warmup": warmup})
        return answer["durations"], torch.tensor(answer["final"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.directory.cleanup()


def serve() -> int:
    """The worker loop: one JSON request per line on stdin, one answer per line on stdout."""
    torch.set_num_threads(1)
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("where"):
            import deepleaps

            answer = {"where": deepleaps.__file__}
        else:
            durations, final = time_one("deepleaps", request["config"], request["steps"], request["warmup"])
            answer = {"durations": durations, "final": final.tolist()}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


# ---- the measurement -------------------------------------------------------------------


def measure(config: str, variants: list[str], workers: dict[str, Worker], steps: int, rounds: int, warmup: int):
    """Per variant, one entry per round: the median and the mean seconds per step of that round's run."""
    runs: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    reference = None
    for variant in variants:  # an untimed round: imports, first allocations
        if variant in workers:
            workers[variant].time_one(config, 100, 0)
        else:
            time_one(variant, config, 100, 0)
    for number in range(1, rounds + 1):
        for variant in variants:
            if variant in workers:
                durations, final = workers[variant].time_one(config, steps, warmup)
            else:
                durations, final = time_one(variant, config, steps, warmup)
            if reference is None:
                reference = final
            elif not torch.allclose(final, reference, rtol=1e-4, atol=1e-5):
                raise SystemExit(f"{variant} ({config}) ends with other parameters than {variants[0]}")
            runs[variant].append((statistics.median(durations), statistics.fmean(durations)))
        line = ", ".join(f"{variant} {values[-1][0] * 1e6:.1f}" for variant, values in runs.items())
        print(f"{config} round {number}/{rounds}, median µs/step: {line}", file=sys.stderr, flush=True)
    return runs


def summary(runs: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """Medians over rounds; the overhead and the ratio pair each run with the plain loop's of the same round."""
    plain = [median for median, _ in runs["plain"]]
    rows = []
    for variant, values in runs.items():
        medians = [median for median, _ in values]
        differences = [v - p for v, p in zip(medians, plain, strict=True)]
        quartiles = statistics.quantiles(differences, n=4) if len(differences) > 1 else [0.0, 0.0, 0.0]
        rows.append(
            {
                "variant": variant,
                "median": statistics.median(medians) * 1e6,
                "mean": statistics.median(mean for _, mean in values) * 1e6,
                "overhead": statistics.median(differences) * 1e6,
                "spread": (quartiles[2] - quartiles[0]) / 2 * 1e6,
                "ratio": statistics.median(v / p for v, p in zip(medians, plain, strict=True)),
            }
        )
    return rows


LABELS = {
    "plain": "plain PyTorch loop",
    "plain_train": "plain loop + `model.train()` every step",
    "train_step": "plain loop calling the container's `train_step`",
    "deepleaps": "deepleaps",
    "ignite": "Ignite",
    "lightning": "Lightning",
}


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| model | variant | µs/step (median) | µs/step (mean) | overhead µs/step | ± (IQR/2) | ratio |",
        "|:------|:--------|-----------------:|---------------:|-----------------:|----------:|------:|",
    ]
    for config, rows in results.items():
        for row in rows:
            label = LABELS.get(row["variant"], row["variant"])
            plain = row["variant"] == "plain"
            overhead = "—" if plain else f"{row['overhead']:+,.1f}"
            spread = "—" if plain else f"{row['spread']:,.1f}"
            ratio = "1.000" if plain else f"{row['ratio']:.3f}"
            lines.append(
                f"| {config} | {label} | {row['median']:,.1f} | {row['mean']:,.1f} | {overhead} | {spread} | {ratio} |"
            )
    return "\n".join(lines)


def profile(config: str, steps: int, limit: int = 30) -> str:
    time_one("deepleaps", config, 100, 0)  # warm up: compile the program, import everything
    data = Batches(config, steps)
    profiler = cProfile.Profile()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        profiler.enable()
        run_deepleaps(config, data)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def machine() -> str:
    return (
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread), {cpu()}, {cores()} cores"
    )


def versions(variants: list[str]) -> str:
    found = []
    for name in variants:
        if name in _MODULES:
            found.append(f"{name} {__import__(_MODULES[name]).__version__}")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, help="timed steps per run (default: 3000; 100 for small)")
    parser.add_argument("--rounds", type=int, help="rounds of every variant (default: 9)")
    parser.add_argument("--warmup", type=int, default=50, help="steps run before the timing starts")
    parser.add_argument("--against", metavar="REV", action="append", default=[], help="also run deepleaps of REV")
    parser.add_argument("--profile", choices=list(CONFIGS), help="cProfile the deepleaps variant and exit")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), default="cpu", help="time steps in process CPU time (default) or wall time"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[options.clock]

    if options.worker:
        quiet_frameworks()
        return serve()
    torch.set_num_threads(1)
    if options.profile:
        print(profile(options.profile, options.steps or 20_000))
        return 0

    variants = ["plain"] + [name for name in options.variants if name != "plain" and available(name)]
    missing = [name for name in options.variants if not available(name)]
    quiet_frameworks()  # after the imports: lightning sets its log level when imported
    workers = {}
    if options.against:  # both sides in worker processes, so both run in the same conditions
        workers["deepleaps@worktree"] = Worker(None, options.clock)
        workers.update({f"deepleaps@{rev}": Worker(rev, options.clock) for rev in options.against})
    at = variants.index("deepleaps") + 1 if "deepleaps" in variants else len(variants)
    variants[at:at] = list(workers)  # next to deepleaps
    try:
        results = {}
        for config in options.configs:
            steps = options.steps or DEFAULT_STEPS[config]
            rounds = options.rounds or DEFAULT_ROUNDS[config]
            chosen = [name for name in variants if CONFIGS[config]["train"] or name not in TRAINING_ONLY]
            times = measure(config, chosen, workers, steps, rounds, options.warmup)
            results[config] = summary(times)
    finally:
        for worker in workers.values():
            worker.close()

    print(f"{machine()}; {versions(variants)}\n")
    print(table(results))
    if missing:
        print(f"\nnot installed: {', '.join(missing)} (pip install -e '.[bench]')")
    print()
    met = True
    for config, rows in results.items():
        row = next((row for row in rows if row["variant"] == "deepleaps"), None)
        target = TARGETS.get(config)
        if row is None or target is None:
            continue
        ok = row["ratio"] <= target
        met = met and ok
        print(
            f"{config}: deepleaps {100 * (row['ratio'] - 1):+.1f}% per step "
            f"(target ≤ {100 * (target - 1):.0f}%): {'met' if ok else 'MISSED'}"
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
