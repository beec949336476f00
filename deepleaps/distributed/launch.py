"""``deepleaps run --nproc-per-node N``: the same run started by torch.distributed's own launcher.

The command line becomes ``python -m torch.distributed.run <launcher options> -m deepleaps
run <the other options>``, and that process replaces this one, so that signals reach the
launcher as they would reach ``torchrun``. One node: a standalone rendezvous on this
machine. Several: the rendezvous options name where the nodes meet.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import attrs


@attrs.frozen
class Launch:
    """What ``torchrun`` is told: processes per node, and for several nodes how they meet."""

    nproc_per_node: int
    nnodes: str = "1"
    node_rank: int | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    rdzv_backend: str = "c10d"

    def arguments(self) -> list[str]:
        """The launcher's own options."""
        options = ["--nproc-per-node", str(self.nproc_per_node)]
        if self.rdzv_endpoint is None:
            if self.nnodes != "1":
                raise ValueError("several nodes meet at a rendezvous endpoint: give --rdzv-endpoint HOST:PORT")
            return [*options, "--standalone"]
        options += ["--nnodes", self.nnodes, "--rdzv-backend", self.rdzv_backend, "--rdzv-endpoint", self.rdzv_endpoint]
        if self.rdzv_id is not None:
            options += ["--rdzv-id", self.rdzv_id]
        if self.node_rank is not None:
            options += ["--node-rank", str(self.node_rank)]
        return options

    def command(self, run_arguments: Sequence[str]) -> list[str]:
        """The whole command line: the launcher, then ``deepleaps run`` with ``run_arguments``."""
        launcher = [sys.executable, "-m", "torch.distributed.run", *self.arguments()]
        return [*launcher, "-m", "deepleaps", "run", *run_arguments]

    def exec(self, run_arguments: Sequence[str]) -> None:
        """Replace this process with the launcher (never returns)."""
        command = self.command(run_arguments)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
