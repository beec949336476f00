"""The trainer container: model, optimizer, loss, data loaders and the current sample.

Built from a YAML mapping that names classes by module path, so user code in
a workspace's ``src/`` plugs in::

    container: src.trainer.ExampleContainer.ExampleContainer   # optional
    seed: 0
    device: auto                    # cuda when present, else cpu
    model: {class: src.model.SimpleConv.SimpleConv, args: {classes: 3}}
    optimizer: {name: Adam, lr: 0.001}          # torch.optim by name
    loss: {name: CrossEntropyLoss}              # torch.nn by name, or class path
    data:
      train:
        dataset: {class: ..., args: {...}}
        transform: [{name: RandomHorizontalFlip}]   # deepleaps.train.transforms, or class paths
        loader: {batch_size: 32, shuffle: true, num_workers: 0}
      valid: {...}

Any value may instead be the path of a YAML file holding it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
from torch.utils.data import DataLoader

from deepleaps.compiler.registry import Reference
from deepleaps.distributed import ddp
from deepleaps.distributed.ranks import world
from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.lang.programfile import load_yaml
from deepleaps.train import transforms
from deepleaps.train.settable import Check, number
from deepleaps.workspace.confine import Confinement


class ConfigError(ProgramError):
    """A trainer configuration that cannot be built."""

    def __init__(self, message: str):
        super().__init__([Diagnostic(message)])


#: What a value naming a file of settings ends with.
YAML = (".yaml", ".yml")


def expand(value: Any, confinement: Confinement) -> Any:
    """A string naming a YAML file (relative to the workspace) is replaced by the file's content.

    Raises:
        ProgramError: the file is outside what ``confinement`` lets the run read.
    """
    if isinstance(value, str) and value.endswith(YAML):
        path = confinement.readable(value)
        if path.is_file():
            return load_yaml(path).data
    return value


def build(spec: Any, confinement: Confinement, *, default_module: Any = None, **extra: Any) -> Any:
    """``{class|name: X, args: {...}, ...}`` → ``X(**args, **rest, **extra)``; ``X`` as
    :meth:`Confinement.load_class` allows it."""
    spec = expand(spec, confinement)
    if isinstance(spec, str):
        spec = {"class": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"expected a mapping with 'class' or 'name', got {spec!r}")
    spec = dict(spec)
    target = spec.pop("class", None) or spec.pop("name", None)
    if not isinstance(target, str):
        raise ConfigError(f"no 'class' or 'name' in {spec!r}")
    factory = confinement.load_class(target, default_module)
    kwargs = {**dict(expand(spec.pop("args", {}), confinement) or {}), **spec, **extra}
    try:
        return factory(**kwargs)
    except TypeError as error:
        raise ConfigError(f"cannot build {target}: {error}") from None


def references(key: str, value: Any) -> Iterator[Reference]:
    """The classes and files the configuration entry ``key: value`` names, as :class:`TrainerContainer`
    reads them: what the compiler confines before the container is built."""
    if key == "container" and isinstance(value, str):
        yield "class", value
    elif key in ("model", "optimizer", "loss"):
        yield from _spec_references(value)
    elif key == "data":
        entries = value.values() if isinstance(value, Mapping) else [value]
        for entry in entries:
            if not isinstance(entry, Mapping):
                yield from _file_references(entry)
                continue
            steps = entry.get("transform")
            for spec in [entry.get("dataset"), *(steps if isinstance(steps, list) else [steps])]:
                yield from _spec_references(spec)
            yield from _file_references(entry.get("loader"))


def _spec_references(spec: Any) -> Iterator[Reference]:
    if isinstance(spec, str):
        yield ("read", spec) if spec.endswith(YAML) else ("class", spec)
    elif isinstance(spec, Mapping):
        target = spec.get("class") or spec.get("name")
        if isinstance(target, str):
            yield "class", target
        yield from _file_references(spec.get("args"))


def _file_references(value: Any) -> Iterator[Reference]:
    if isinstance(value, str) and value.endswith(YAML):
        yield "read", value


def choose_device(name: str | None) -> torch.device:
    """``auto`` (or nothing): CUDA when present, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass


class TrainerContainer:
    """Holds what the training commands act on; subclass it to change a step.

    ``modules`` maps the names checkpoints use (``MODEL``, ``OPTIMIZER``) to
    objects with ``state_dict``/``load_state_dict``.
    """

    #: The attributes ``SET main.PATH VALUE`` may change while the training runs: dotted
    #: paths from the container, each with the values it takes (:mod:`deepleaps.train.settable`).
    #: Nothing else of the container is changed that way, the model never. A subclass
    #: declares more: ``settable = {**TrainerContainer.settable, "clip": number(above=0)}``.
    settable: ClassVar[Mapping[str, Check]] = {"loss.label_smoothing": number(at_least=0, at_most=1)}

    def __init__(self, config: Mapping[str, Any], root: Path | str = ".", *, confinement: Confinement | None = None):
        self.config = dict(config)
        self.root = Path(root)
        #: The classes and files the configuration may name: by default, ``root``'s code and the framework's.
        self.confinement = confinement or Confinement(self.root)
        self.device = choose_device(self.config.get("device"))
        self._on_cpu = self.device.type == "cpu"
        if "seed" in self.config:
            seed_everything(int(self.config["seed"]))
        self.model: torch.nn.Module = build(self.config["model"], self.confinement).to(self.device)
        self.optimizer = self._optimizer(self.config.get("optimizer", {"name": "Adam", "lr": 1e-3}))
        self.loss = build(self.config.get("loss", "CrossEntropyLoss"), self.confinement, default_module=torch.nn)
        self.data_config: dict[str, Any] = dict(expand(self.config.get("data", {}), self.confinement) or {})
        self._loaders: dict[str, DataLoader] = {}
        self.sample: Any = None
        #: The last batch a loader gave (``sample`` is None between epochs): what a reload tries.
        self.last_sample: Any = None
        self.last_loss: float | None = None
        self.metrics: dict[str, float] = {}

    def _optimizer(self, spec: Any) -> torch.optim.Optimizer:
        return build(spec, self.confinement, default_module=torch.optim, params=self.model.parameters())

    @property
    def modules(self) -> dict[str, Any]:
        """What checkpoints keep: the model itself, never a distributed wrapper of it."""
        return {"MODEL": ddp.unwrap(self.model), "OPTIMIZER": self.optimizer}

    # ---- data ---------------------------------------------------------------------

    def loader_settings(self, name: str) -> dict[str, Any]:
        if name not in self.data_config:
            known = ", ".join(self.data_config) or "none"
            raise ConfigError(f"no data set '{name}' in the trainer configuration (known: {known})")
        return dict(expand(self.data_config[name].get("loader", {}), self.confinement) or {})

    def dataloader(self, name: str, **overrides: Any) -> DataLoader:
        """The DataLoader of data set ``name``, rebuilt when ``overrides`` change its settings."""
        settings = {**self.loader_settings(name), **overrides}
        cached = self._loaders.get(name)
        if cached is not None and getattr(cached, "_deepleaps_settings", None) == settings:
            return cached
        entry = self.data_config[name]
        extra = {}
        if entry.get("transform"):
            steps = expand(entry["transform"], self.confinement)
            steps = steps if isinstance(steps, list) else [steps]
            extra["transform"] = transforms.Compose(
                [build(step, self.confinement, default_module=transforms) for step in steps]
            )
        dataset = build(entry["dataset"], self.confinement, **extra)
        share = ddp.sampler(dataset, bool(settings.get("shuffle")), int(self.config.get("seed", 0)))
        if share is None:
            loader = DataLoader(dataset, **settings)
        else:  # each rank its share; the sampler shuffles
            loader = DataLoader(dataset, sampler=share, **{k: v for k, v in settings.items() if k != "shuffle"})
        loader._deepleaps_settings = settings
        self._loaders[name] = loader
        return loader

    def to_device(self, batch: Any) -> Any:
        """The batch on the container's device; on the CPU, as the DataLoader gave it."""
        if self._on_cpu:
            return batch
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(item) for item in batch)
        if isinstance(batch, Mapping):
            return {key: self.to_device(item) for key, item in batch.items()}
        return batch

    # ---- steps ----------------------------------------------------------------------

    def forward(self, sample: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, outputs, targets of a ``(inputs, targets)`` batch."""
        inputs, targets = self.to_device(sample)
        return inputs, self.model(inputs), targets

    def train_step(self) -> float:
        """One optimisation step on the current sample; returns the loss."""
        if not self.model.training:  # evaluate() switched it; a submodule the user froze stays so
            self.model.train()
        _, outputs, targets = self.forward(self.sample)
        loss = self.loss(outputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.item()
        return self.last_loss

    def canary(self, sample: Any) -> None:
        """What a reload tries on the last batch before it is committed (docs/reload.md): the
        forward pass and the loss, without gradients. A container whose step differs says here
        what its step needs to work."""
        _, outputs, targets = self.forward(sample)
        self.loss(outputs, targets)

    @torch.no_grad()
    def evaluate(self, name: str, metric: str = "accuracy") -> float:
        """``metric`` over data set ``name``: accuracy, or the mean loss."""
        training = self.model.training
        self.model.eval()
        try:
            return self._evaluate(name, metric)
        finally:
            self.model.train(training)

    def _evaluate(self, name: str, metric: str) -> float:
        total, correct, loss_sum = 0, 0, 0.0
        for sample in self.dataloader(name):
            _, outputs, targets = self.forward(sample)
            total += targets.shape[0]
            loss_sum += self.loss(outputs, targets).item() * targets.shape[0]
            if metric == "accuracy":
                correct += int((outputs.argmax(dim=1) == targets).sum().item())
        seen, right, summed = world().sum([total, correct, loss_sum])  # over every rank's share
        value = right / max(seen, 1) if metric == "accuracy" else summed / max(seen, 1)
        self.metrics[f"{name}_{metric}"] = value
        return value


@attrs.frozen
class ModelSwap:
    """A model built again (its class reloaded) with the old weights, and what the optimizer
    becomes with it; nothing live changes until :meth:`install` (docs/reload.md)."""

    model: torch.nn.Module
    #: The keys that did not carry over: ``missing`` (new, freshly initialised),
    #: ``unexpected`` (gone) and ``mismatched`` (a different shape: freshly initialised).
    report: dict[str, list[str]]
    #: The parameters of each of the optimizer's param groups, in order.
    groups: list[list[torch.nn.Parameter]]
    state: dict[torch.Tensor, Any]

    def install(self, container: TrainerContainer) -> None:
        """Put the new model in the container and the optimizer; cannot fail."""
        optimizer = container.optimizer
        for group, parameters in zip(optimizer.param_groups, self.groups):
            group["params"] = parameters
        optimizer.state.clear()
        optimizer.state.update(self.state)
        container.model = self.model


def rebuilt_model(container: TrainerContainer) -> ModelSwap:
    """The model built again from the configuration, with the old weights, training modes and
    frozen parameters; the optimizer goes on with the state of every parameter that carried
    over and takes the new ones in its first param group (docs/design.md §7)."""
    old = ddp.unwrap(container.model)
    new = build(container.config["model"], container.confinement).to(container.device)
    old_modules = dict(old.named_modules())
    for name, module in new.named_modules():
        module.training = old_modules[name].training if name in old_modules else old.training
    old_state, new_state = old.state_dict(), new.state_dict()
    mismatched = [k for k in old_state.keys() & new_state.keys() if old_state[k].shape != new_state[k].shape]
    carried = {k: v for k, v in old_state.items() if k in new_state and k not in mismatched}
    result = new.load_state_dict(carried, strict=False)
    report = {
        "missing": sorted(set(result.missing_keys) - set(mismatched)),
        "unexpected": sorted(old_state.keys() - new_state.keys()),
        "mismatched": sorted(mismatched),
    }
    old_parameters, new_parameters = dict(old.named_parameters()), dict(new.named_parameters())
    kept = [name for name in old_parameters if name in new_parameters and name not in mismatched]
    for name in kept:
        new_parameters[name].requires_grad_(old_parameters[name].requires_grad)
    replacement = {id(old_parameters[name]): new_parameters[name] for name in kept}
    optimizer = container.optimizer
    groups = [[replacement[id(p)] for p in group["params"] if id(p) in replacement] for group in optimizer.param_groups]
    groups[0].extend(parameter for name, parameter in new_parameters.items() if name not in kept)
    state = {replacement[id(p)]: values for p, values in optimizer.state.items() if id(p) in replacement}
    return ModelSwap(new, report, groups, state)
