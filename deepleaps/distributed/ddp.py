"""The model wrapped in DistributedDataParallel, and the samplers that give each rank its share of the data.

The trainer container's ``model`` is the wrapper while a run is distributed; what is saved,
reloaded or rebuilt is always the module inside it (:func:`unwrap`), so checkpoints keep the
module's own keys and load with any number of processes. DistributedDataParallel reduces
gradients only over the parameters that required them when it was made: after any change of
the parameters or of ``requires_grad`` it is made again (:func:`rewrap`), which also copies
rank 0's weights and buffers to every rank, so a new layer starts with rank 0's values.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from deepleaps.distributed.ranks import World, world


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module a DistributedDataParallel wraps, or ``model`` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _signature(module: torch.nn.Module) -> tuple[tuple[int, bool], ...]:
    return tuple((id(parameter), parameter.requires_grad) for parameter in module.parameters())


def wrap(module: torch.nn.Module, current: World | None = None) -> torch.nn.Module:
    """``module`` wrapped for the run's ranks (itself on a single process)."""
    current = current or world()
    if not current.distributed:
        return module
    device_ids = [current.local_rank] if current.backend == "nccl" else None
    wrapped = DistributedDataParallel(module, device_ids=device_ids)
    wrapped._deepleaps_signature = _signature(module)  # type: ignore[assignment]
    return wrapped


def rewrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model``, wrapped again if its module or the parameters that train changed since it was
    wrapped (a collective: every rank calls it at the same point)."""
    if not world().distributed:
        return model
    if isinstance(model, DistributedDataParallel) and model._deepleaps_signature == _signature(model.module):
        return model
    return wrap(unwrap(model))


def sampler(dataset: Dataset, shuffle: bool, seed: int) -> DistributedSampler | None:
    """Each rank's share of ``dataset`` in a distributed run (None on a single process).

    The order is a function of ``seed`` and the epoch (:func:`set_epoch`), not of any random
    state: a run resumed inside an epoch, with the same number of ranks, goes through the
    same batches."""
    current = world()
    if not current.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=current.size, rank=current.rank, shuffle=shuffle, seed=seed)


def set_epoch(loader: Any, epoch: int) -> None:
    """Tell ``loader``'s distributed sampler, if it has one, which epoch begins."""
    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        loader.sampler.set_epoch(epoch)


def fingerprint(model: torch.nn.Module) -> str:
    """The sha256 of the module's weights and buffers, to compare across ranks."""
    digest = hashlib.sha256()
    for name, value in unwrap(model).state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
