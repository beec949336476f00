"""Built-in training commands, under the seed's names (docs/design.md §4)."""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import torch

from deepleaps.compiler.plan import Kind
from deepleaps.compiler.registry import Reference
from deepleaps.distributed import ddp
from deepleaps.distributed.ranks import world
from deepleaps.runtime.command import Command, command
from deepleaps.runtime.context import Context
from deepleaps.train.checkpoint import CheckpointRef, CheckpointStore, rng_state
from deepleaps.train.container import ConfigError, TrainerContainer
from deepleaps.train.container import references as container_references
from deepleaps.train.progress import Progress

log = logging.getLogger("deepleaps.train")


def path_arguments(**modes: str) -> Callable[[str, Any], Iterator[Reference]]:
    """A command's ``references``: its arguments ``modes`` names are paths to "read" or "write"."""

    def references(key: str, value: Any) -> Iterator[Reference]:
        if key in modes and isinstance(value, str):
            yield modes[key], value

    return references


def container_of(ctx: Context) -> TrainerContainer:
    if ctx.container is None:
        raise RuntimeError("no trainer container yet: run TrainerContainerLoaderCommand first")
    return ctx.container


@command
class TrainerContainerLoaderCommand(Command):
    """Build the trainer container from its configuration (the node's args)."""

    name = "TrainerContainerLoaderCommand"
    kind = Kind.LEAF
    extra_args = True
    node_defaults = MappingProxyType({"finish": True})
    references = staticmethod(container_references)

    def run(self, ctx: Context) -> None:
        config = ctx.resolve(self.extra)
        confinement = ctx.confinement
        cls = confinement.load_class(config.pop("container")) if "container" in config else TrainerContainer
        if not (isinstance(cls, type) and issubclass(cls, TrainerContainer)):
            raise ConfigError(f"'container' must name a TrainerContainer subclass, got {cls!r}")
        root = Path(ctx.variables.get("workspace", "."))
        container = cls(config, root, confinement=confinement)
        container.model = ddp.wrap(container.model)
        ctx.container = container
        ctx.variables["main"] = container


@attrs.frozen
class _ModuleArgs:
    required: list[str] = attrs.Factory(lambda: ["MODEL", "OPTIMIZER"])
    base_path: Any = None


class _ModuleCommand(Command):
    kind = Kind.LEAF
    Args = _ModuleArgs
    extra_args = True  # per-module options: MODEL: {file_name: $latest.id, ...}
    #: Whether the command reads or writes the checkpoints of ``base_path``.
    mode = "read"

    def store(self, ctx: Context) -> CheckpointStore:
        base = self.args.base_path if self.args.base_path is not None else ctx.variables.get("base")
        if base is None:
            raise RuntimeError("no base_path and no $base: where are checkpoints kept?")
        confinement = ctx.confinement
        return CheckpointStore(confinement.writable(base) if self.mode == "write" else confinement.readable(base))

    def modules(self, ctx: Context) -> dict[str, Any]:
        modules = container_of(ctx).modules
        missing = [name for name in self.args.required if name not in modules]
        if missing:
            raise KeyError(f"the container has no module {', '.join(missing)} (it has {', '.join(modules)})")
        return {name: modules[name] for name in self.args.required}


@command
class ModuleLoadClass(_ModuleCommand):
    """Load the required modules from a checkpoint (``file_name: $latest.id``); none yet: start fresh."""

    name = "ModuleLoadClass"
    aliases = ("ModuleLoadCommand",)

    @staticmethod
    def references(key: str, value: Any) -> Iterator[Reference]:
        if key == "base_path" and isinstance(value, str):
            yield "read", value
        elif isinstance(value, Mapping) and isinstance(value.get("file_name"), str):
            yield "read", value["file_name"]

    def run(self, ctx: Context) -> None:
        store = self.store(ctx)
        options = ctx.resolve(self.extra)
        payload: dict[str, Any] | None = None
        for name, module in self.modules(ctx).items():
            file_name = (options.get(name) or {}).get("file_name", ctx.lookup("latest.id"))
            if file_name is None:
                log.info("%s: no checkpoint to load %s from; starting fresh", self.node.name, name)
                continue
            path = self._checkpoint_path(ctx, store, str(file_name))
            if payload is None or payload.get("_path") != path:
                loaded = CheckpointStore.load(path, container_of(ctx).device, allow_pickle=ctx.confinement.pickle)
                payload = {**loaded, "_path": path}
            module.load_state_dict(payload["modules"][name])
            log.info("%s: loaded %s from %s", self.node.name, name, path)

    @staticmethod
    def _checkpoint_path(ctx: Context, store: CheckpointStore, file_name: str) -> Path:
        """A file (relative to the workspace), the checkpoint ``$latest`` names (finetuning: another
        run's), or an id in ``store``; each where the run may read."""
        named = ctx.confinement.readable(file_name)
        if named.is_file():
            return named
        latest = ctx.variables.get("latest")
        if isinstance(latest, CheckpointRef) and latest.id == file_name:
            return latest.path
        return ctx.confinement.readable(store.path_of(file_name))


@command
class ModuleSaveClass(_ModuleCommand):
    """Save the required modules, the node counters, the RNG states and the program."""

    name = "ModuleSaveClass"
    aliases = ("ModuleSaveCommand",)
    mode = "write"
    references = staticmethod(path_arguments(base_path="write"))

    def run(self, ctx: Context) -> None:
        ref = save_checkpoint(ctx, self.modules(ctx), self.store(ctx))
        log.info("%s: saved checkpoint %s", self.node.name, ref.id)


def save_checkpoint(ctx: Context, modules: dict[str, Any], store: CheckpointStore) -> CheckpointRef:
    """Write modules, node counters, the position, RNG states and the program; ``$latest`` then names it.

    In a distributed run every rank calls it at the same point; rank 0 writes, with every
    rank's random state, and the others learn ``$latest`` from it.
    """
    current, shared = world(), world().shared
    states = shared.rng if shared is not None else current.gather(rng_state())
    if shared is None:  # a command of the program: every rank is here
        ref = current.broadcast(_write_checkpoint(ctx, modules, store, states) if current.is_main else None)
    elif current.is_main:  # a safe point's change: the other ranks learn $latest with it
        ref = _write_checkpoint(ctx, modules, store, states)
    else:
        ref = shared.latest
    ctx.variables["latest"] = ref
    return ref


def _write_checkpoint(
    ctx: Context, modules: dict[str, Any], store: CheckpointStore, states: list[Any] | None
) -> CheckpointRef:
    interpreter = ctx.interpreter
    payload = {
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "states": interpreter.snapshot(),
        "position": interpreter.position(),
        "rng": rng_state(),
        "rng_ranks": states if world().distributed else None,
        "commands": {name: state for name, cmd in interpreter.commands.items() if (state := cmd.state_dict())},
        "program": ctx.variables.get("program_text"),
        "variables": {key: ctx.variables[key] for key in ctx.variables.get("exported", ())},
        **{key: part() for key, part in interpreter.checkpoint_parts.items()},
    }
    # ckp.meta is rewritten at every save: it keeps the counters of graphs only.
    plan = interpreter.plan
    counters = {name: state.counters() for name, state in interpreter.states.items() if plan[name].kind.has_children}
    return store.save(payload, counters)


@command
class RunCommand(Command):
    """Call a method of the trainer container: ``method: train_step``."""

    name = "RunCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        method: str
        args: dict = attrs.Factory(dict)

    def run(self, ctx: Context) -> None:
        container = container_of(ctx)
        method = getattr(container, self.args.method, None)
        if not callable(method):
            raise AttributeError(f"{type(container).__name__} has no method '{self.args.method}'")
        method(**self.args.args)


@command
class DataLoaderCommand(Command):
    """A loader over one of the container's data sets: an activation is an epoch, a step a batch.

    ``batch_size``, ``shuffle`` and ``num_workers`` override the data set's
    loader settings; changed while running, they apply from the next epoch.
    """

    name = "DataLoaderCommand"
    kind = Kind.LOADER
    aliases = ("LoaderCommand",)

    @attrs.frozen
    class Args:
        loader: str = "train"
        batch_size: int | None = None
        shuffle: bool | None = None
        num_workers: int | None = None
        progress: bool = True

    _batches: Any = None
    _bar: Progress | None = None
    _outer_sample: Any = None
    _epoch_rng: Any = None
    _resume_rng: Any = None

    def state_dict(self) -> dict:
        """The random state this epoch started with: a checkpoint written inside the epoch
        replays its batch order on resume."""
        return {"epoch_rng": self._epoch_rng} if self._batches is not None else {}

    def load_state_dict(self, state) -> None:
        self._resume_rng = state.get("epoch_rng")

    def start(self, ctx: Context) -> None:
        overrides = {
            key: value
            for key in ("batch_size", "shuffle", "num_workers")
            if (value := getattr(self.args, key)) is not None
        }
        container = container_of(ctx)
        self._outer_sample = container.sample
        if self._resume_rng is not None:  # resuming inside this epoch: shuffle as it did
            torch.set_rng_state(self._resume_rng)
            self._resume_rng = None
        self._epoch_rng = torch.get_rng_state()
        loader = container.dataloader(self.args.loader, **overrides)
        epoch = ctx.counters(self.node.name).epoch
        ddp.set_epoch(loader, epoch)
        self._batches = iter(loader)
        shown = self.args.progress and world().is_main
        self._bar = Progress(f"{self.args.loader} {epoch}", len(loader)) if shown else None

    def next_step(self, ctx: Context) -> bool:
        try:
            batch = next(self._batches)
        except StopIteration:
            return False
        ctx.sample = ctx.container.sample = ctx.container.last_sample = batch
        if self._bar is not None:
            self._bar.update(ctx.container.last_loss)
        return True

    def end(self, ctx: Context) -> None:
        if ctx.container is not None:
            ctx.container.sample = self._outer_sample
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._batches = None


@command
class EvaluateCommand(Command):
    """Evaluate a metric (``accuracy`` or ``loss``) over a data set and log it."""

    name = "EvaluateCommand"
    kind = Kind.LEAF

    @attrs.frozen
    class Args:
        loader: str = "valid"
        metric: str = attrs.field(default="accuracy", validator=attrs.validators.in_(("accuracy", "loss")))

    def run(self, ctx: Context) -> None:
        value = container_of(ctx).evaluate(self.args.loader, self.args.metric)
        if not world().is_main:
            return
        log.info("%s %s: %.4f", self.args.loader, self.args.metric, value)
        print(f"{self.args.loader} {self.args.metric}: {value:.4f}", flush=True)


@command
class LogMetricsCommand(Command):
    """Append counters, loss, learning rate and metrics to ``metrics.csv`` (and TensorBoard if installed)."""

    name = "LogMetricsCommand"
    kind = Kind.LEAF
    references = staticmethod(path_arguments(file="write"))

    @attrs.frozen
    class Args:
        file: str = "metrics.csv"
        tensorboard: bool = True

    _writer: Any = None
    _columns: list[str] | None = None

    def run(self, ctx: Context) -> None:
        if not world().is_main:
            return
        container = container_of(ctx)
        assert self.node.parent is not None  # a leaf runs under a graph
        parent = ctx.counters(self.node.parent)
        row = {
            "step": parent.step,
            "total_step": parent.total_step,
            "loss": container.last_loss,
            "lr": container.optimizer.param_groups[0]["lr"],
            **container.metrics,
        }
        self._append(ctx.confinement.writable(Path(ctx.variables.get("base", ".")) / self.args.file), row)
        self._tensorboard(ctx, row)

    def _append(self, path: Path, row: dict) -> None:
        """Append ``row``; a column the file lacks (a metric that appears later) rewrites it with a wider header."""
        if self._columns is None:  # a resumed run appends to the file's own columns
            with contextlib.suppress(FileNotFoundError), path.open(newline="") as file:
                self._columns = next(csv.reader(file), [])
        columns = list(dict.fromkeys([*(self._columns or []), *row]))
        if path.exists() and columns == self._columns:
            with path.open("a", newline="") as file:
                csv.DictWriter(file, fieldnames=columns, extrasaction="ignore").writerow(row)
            return
        rows = []
        if path.exists():
            with path.open(newline="") as file:
                rows = list(csv.DictReader(file))
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows([*rows, row])
        self._columns = columns

    def _tensorboard(self, ctx: Context, row: dict) -> None:
        if not self.args.tensorboard:
            return
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writer = False
                return
            self._writer = SummaryWriter(str(Path(ctx.variables.get("base", ".")) / "tensorboard"))
        if self._writer:
            for key, value in row.items():
                if isinstance(value, int | float) and key not in ("step", "total_step"):
                    self._writer.add_scalar(key, value, row["total_step"])


@command
class SaveImageGridCommand(Command):
    """Save a PNG grid of the current batch: inputs, outputs (as class maps or images) and targets."""

    name = "SaveImageGridCommand"
    kind = Kind.LEAF
    aliases = ("ImageGridCommand",)
    references = staticmethod(path_arguments(folder="write"))

    @attrs.frozen
    class Args:
        folder: str = "images"
        count: int = 8

    @torch.no_grad()
    def run(self, ctx: Context) -> None:
        from deepleaps.train.images import save_grid

        container = container_of(ctx)
        inputs, outputs, targets = container.forward(container.sample)  # on every rank: a forward may sync
        if not world().is_main:
            return
        counters = ctx.counters(self.node.name)
        folder = ctx.confinement.writable(Path(ctx.variables.get("base", ".")) / self.args.folder)
        path = folder / f"{self.node.name}-{counters.total_step:06d}.png"
        save_grid(path, inputs[: self.args.count], outputs[: self.args.count], targets[: self.args.count])
