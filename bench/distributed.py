"""Benchmark a distributed step: deepleaps against a plain hand-written DDP loop, two processes.

One ``torchrun --nproc-per-node 2`` launch runs, in the same two processes, ``--rounds``
rounds of both variants in turn (ABAB…, after an untimed round), each training the small
model (256-512-512-10 with ReLUs, cross-entropy, SGD lr 0.01, batch 128 a rank) from the
same seed on the same data:

* ``plain``: DistributedDataParallel, a DataLoader over a DistributedSampler with its epoch
  set each epoch, and per batch: forward, loss, ``zero_grad``, backward, ``optimizer.step``,
  ``loss.item()``;
* ``deepleaps``: ``App`` running ``$root( $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(
  $TRAINING_BATCH( $TRAINING_STEP ) ) )`` with the control server on and lockstep (one
  broadcast of an integer at each safe point), the container's own ``train_step``.

Rank 0 stamps the wall time after every step; a step's time is the difference between two
stamps (the first ``--warmup`` steps of a run are left out). Wall time, not CPU time: a
step of a distributed run includes waiting for the other rank. Per run: the median step;
the table gives the median over rounds, the median ratio to the plain loop of the same
round and the quartiles of those ratios. Both variants must end with the same parameters,
or the run stops. The backend is gloo on the CPU and nccl where CUDA is available (one GPU
per rank).

Usage::

    python bench/distributed.py                         # 9 rounds of 300 steps
    python bench/distributed.py --rounds 15 --steps 600
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import cores, cpu, load
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from deepleaps.app.app import App
from deepleaps.distributed import ranks
from deepleaps.distributed.ddp import unwrap
from deepleaps.train import TrainerContainer

#: Samples a rank trains on in an epoch, and the batch size.
BATCH = 128
BATCHES_PER_EPOCH = 50
SEED = 0


class SmallModel(nn.Module):
    """overhead.py's small configuration."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, inputs):
        return self.layers(inputs)


class SmallData(Dataset):
    """Random inputs and labels, the same for every variant and rank (the sampler splits them)."""

    def __init__(self, size: int = 2 * BATCH * BATCHES_PER_EPOCH):
        generator = torch.Generator().manual_seed(1)
        self.inputs = torch.randn(size, 256, generator=generator)
        self.labels = torch.randint(0, 10, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.inputs[index], self.labels[index]


class StampedContainer(TrainerContainer):
    """The default step, and the wall time after it."""

    def __init__(self, config, root=".", **options):
        super().__init__(config, root, **options)
        self.stamps: list[float] = []

    def train_step(self) -> float:
        loss = super().train_step()
        self.stamps.append(time.perf_counter())
        return loss


# ---- the variants (in each rank) -------------------------------------------------------------


def run_plain(epochs: int, device: torch.device) -> tuple[list[float], nn.Module]:
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(SEED)
    module = SmallModel().to(device)
    model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_function = nn.CrossEntropyLoss()
    data = SmallData()
    sampler = DistributedSampler(data, shuffle=True, seed=SEED)
    loader = DataLoader(data, batch_size=BATCH, sampler=sampler)
    stamps = []
    model.train()
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            loss = loss_function(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()
            stamps.append(time.perf_counter())
    return stamps, module


def write_workspace(directory: Path, epochs: int) -> Path:
    """A workspace whose command file trains the small model for ``epochs`` with the server on."""
    directory.mkdir(parents=True, exist_ok=True)
    trainer = {
        "container": "distributed.StampedContainer",
        "seed": SEED,
        "device": "auto",
        "model": {"class": "distributed.SmallModel"},
        "optimizer": {"name": "SGD", "lr": 0.01},
        "loss": {"name": "CrossEntropyLoss"},
        "data": {
            "train": {
                "dataset": {"class": "distributed.SmallData"},
                "loader": {"batch_size": BATCH, "shuffle": True},
            }
        },
    }
    config = {
        "DEFAULT": ["$root( $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER( $TRAINING_BATCH( $TRAINING_STEP ) ) )"],
        "DEFINE": {
            "TRAINER_CONTAINER_LOAD": {"command": "TrainerContainerLoaderCommand", "args": trainer, "finish": True},
            "TRAINING_LOADER": {"command": "Graph", "repeat": epochs},
            "TRAINING_BATCH": {"command": "DataLoaderCommand", "args": {"loader": "train", "progress": False}},
            "TRAINING_STEP": {"command": "RunCommand", "args": {"method": "train_step"}},
        },
        # The benchmark's classes are this script's (run as __main__, named as distributed),
        # outside the workspace.
        "COMMAND_CONTROLLER": {"ipc_host": "127.0.0.1", "ipc_port": 0, "allow_classes": ["distributed", "__main__"]},
        "RUN": {"output": "output", "name": "bench", "mode": "new"},
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_deepleaps(workspace: Path, epochs: int) -> tuple[list[float], nn.Module]:
    app = App(write_workspace(workspace, epochs), workspace, serve=True, port=0)
    status = app.run(handle_signals=False)
    if status != 0:
        raise SystemExit(f"the deepleaps run failed with {status}; see {workspace}/output")
    container = app.interpreter.context.container
    return container.stamps, unwrap(container.model)


def worker(args: argparse.Namespace) -> int:
    """In each rank: the rounds; rank 0 writes the step times to ``--out``."""
    world = ranks.join()
    torch.set_num_threads(1)
    sys.modules.setdefault("distributed", sys.modules["__main__"])  # the command file names this module
    device = torch.device("cuda", world.local_rank) if world.backend == "nccl" else torch.device("cpu")
    epochs = max(1, -(-(args.steps + args.warmup) // BATCHES_PER_EPOCH))
    workspace = Path(args.workspace) / f"rank{world.rank}"
    runs: dict[str, list[float]] = {"plain": [], "deepleaps": []}
    for round_number in range(args.rounds + 1):
        results = {}
        for variant in ("plain", "deepleaps"):
            torch.distributed.barrier()
            stamps, model = run_plain(epochs, device) if variant == "plain" else run_deepleaps(workspace, epochs)
            steps = [later - earlier for earlier, later in zip(stamps[args.warmup :], stamps[args.warmup + 1 :])]
            results[variant] = (statistics.median(steps), [p.detach().cpu() for p in model.parameters()])
        same = all(torch.equal(a, b) for a, b in zip(results["plain"][1], results["deepleaps"][1]))
        if not same:
            raise SystemExit("deepleaps ended with other parameters than the plain DDP loop")
        if round_number > 0:  # the first round is untimed
            for variant, (median, _) in results.items():
                runs[variant].append(median)
    if world.is_main:
        Path(args.out).write_text(json.dumps({"runs": runs, "backend": world.backend, "size": world.size}))
    ranks.leave()
    return 0


# ---- the launcher ---------------------------------------------------------------------------


def table(results: dict) -> str:
    runs = results["runs"]
    plain = runs["plain"]
    lines = [
        f"backend {results['backend']}, {results['size']} processes, {len(plain)} rounds",
        "| variant | median step (µs) | ratio to plain DDP | ratio's quartiles |",
        "| --- | ---: | ---: | ---: |",
    ]
    for variant, medians in runs.items():
        ratios = [m / p for m, p in zip(medians, plain)]
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0], 0, ratios[0])
        step = statistics.median(medians) * 1e6
        lines.append(f"| {variant} | {step:.0f} | {statistics.median(ratios):.3f} | {low:.3f} – {high:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="steps left out at the start of each run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--nproc-per-node", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc-per-node", str(args.nproc_per_node), __file__, "--worker"),
            *("--steps", str(args.steps), "--warmup", str(args.warmup), "--rounds", str(args.rounds)),
            *("--workspace", folder, "--out", str(out)),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command, check=True, env=env)
        results = json.loads(out.read_text())
    print(f"{cpu()}, {cores()} cores, load average {load()}, torch {torch.__version__}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
