"""This process's place in a distributed run, and the few collectives the rest of deepleaps uses.

A run is distributed when torch.distributed's launcher (``torchrun``, or ``deepleaps run
--nproc-per-node N``) started it with ``WORLD_SIZE`` above 1; otherwise :data:`SINGLE` is
the world and every collective here is the identity. The backend is nccl when CUDA is
available, else gloo.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.distributed as dist

#: How long a collective may wait for the other ranks by default (RUN.collective_timeout).
TIMEOUT = 300.0


@attrs.define
class World:
    """The ranks of the run. ``shared`` holds, while a safe point applies changes, what rank 0
    collected there (every rank's random state) and its ``$latest`` (see deepleaps.distributed.lockstep)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    shared: Shared | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def announce(self, values: Sequence[int]) -> Announcement:
        """Start sending rank 0's few integers to every rank; :meth:`Announcement.wait` has them.
        Started at one safe point and awaited at the next, the collective overlaps a step."""
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        work = dist.broadcast(tensor, src=0, async_op=True) if self.distributed else None
        return Announcement(tensor, work)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [value]
        box: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, box, dst=0)
        return box

    def all_agree(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank."""
        if not self.distributed:
            return ok
        tensor = torch.tensor([1 if ok else 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return bool(tensor.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        """The sums over the ranks of each of ``values``."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    @property
    def device(self) -> torch.device:
        """Where nccl's tensors must be; gloo takes them on the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


@attrs.frozen
class Announcement:
    """Integers on their way from rank 0."""

    tensor: torch.Tensor
    work: Any = None

    def wait(self) -> list[int]:
        if self.work is not None:
            self.work.wait()
        return [int(value) for value in self.tensor.tolist()]


@attrs.define
class Shared:
    """What rank 0 sends along with the changes of a safe point."""

    #: Every rank's random state at this safe point (on rank 0; None elsewhere).
    rng: list[Any] | None = None
    #: ``$latest`` on rank 0 after the changes, for the other ranks' checkpoint commands.
    latest: Any = None


SINGLE = World()
_world = SINGLE


def world() -> World:
    """The world of this process (set up by :func:`join`; :data:`SINGLE` before or without it)."""
    return _world


def backend_for(cuda: bool) -> str:
    return "nccl" if cuda else "gloo"


def join(timeout: float = TIMEOUT) -> World:
    """Join the process group the launcher's environment describes; a single process joins none.

    ``timeout``: seconds a collective waits for the other ranks before the run fails
    (RUN.collective_timeout).
    """
    global _world
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or _world.distributed:
        return _world
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend_for(torch.cuda.is_available())
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    _world = World(rank, size, local_rank, backend)
    return _world


def leave() -> None:
    """Leave the process group (the run ended)."""
    global _world
    if _world.distributed and dist.is_initialized():
        dist.destroy_process_group()
    _world = SINGLE
