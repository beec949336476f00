"""Checkpoints that a crash can never leave half written (docs/design.md §9).

A checkpoint is one file ``checkpoints/<id>.pt`` written to a temporary file
in the same folder, flushed to disk and renamed into place; ``ckp.meta``
(JSON, replaced the same way) lists the checkpoints and names the latest.
Ids are sequential (``000001``, ``000002`` …) and are what ``$latest.id``
resolves to.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.workspace.confine import PICKLE_SETTING

META = "ckp.meta"
FOLDER = "checkpoints"


def atomic_write(path: Path, write, *, durable: bool = True) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    ``durable`` also flushes the data and the folder to disk, so that a power
    cut cannot lose the rename either (checkpoints); a monitor file skips it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if not durable:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@attrs.frozen
class CheckpointRef:
    """What ``$latest`` resolves to: a checkpoint's id and path."""

    id: str
    path: Path
    counters: Mapping[str, Any] = attrs.field(factory=dict, eq=False)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        name, keys, position, has_gauss, gauss = numpy.random.get_state(legacy=True)
        # Plain values: a checkpoint loads without unpickling a numpy array.
        state["numpy"] = [name, numpy.asarray(keys).tolist(), position, has_gauss, gauss]
    except ImportError:
        pass
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy

        name, keys, position, has_gauss, gauss = state["numpy"]
        numpy.random.set_state((name, numpy.asarray(keys, dtype=numpy.uint32), position, has_gauss, gauss))


class CheckpointStore:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER

    def meta(self) -> dict[str, Any]:
        path = self.run_dir / META
        if not path.is_file():
            return {"latest": None, "checkpoints": []}
        return json.loads(path.read_text(encoding="utf-8"))

    def latest(self) -> CheckpointRef | None:
        meta = self.meta()
        for entry in reversed(meta["checkpoints"]):
            if entry["id"] == meta["latest"]:
                return CheckpointRef(entry["id"], self.folder / entry["file"], entry.get("counters", {}))
        return None

    def path_of(self, checkpoint_id: str) -> Path:
        return self.folder / f"{checkpoint_id}.pt"

    def save(self, payload: Mapping[str, Any], counters: Mapping[str, Any] | None = None) -> CheckpointRef:
        """Write a checkpoint atomically, then the meta file that names it latest."""
        self._sweep()
        meta = self.meta()
        number = max((int(entry["id"]) for entry in meta["checkpoints"]), default=0) + 1
        checkpoint_id = f"{number:06d}"
        path = self.path_of(checkpoint_id)
        atomic_write(path, lambda file: torch.save(dict(payload), file))
        entry: dict[str, Any] = {"id": checkpoint_id, "file": path.name, "counters": dict(counters or {})}
        meta = {"latest": checkpoint_id, "checkpoints": [*meta["checkpoints"], entry]}
        atomic_write(self.run_dir / META, lambda file: file.write(json.dumps(meta, indent=1).encode()))
        return CheckpointRef(checkpoint_id, path, entry["counters"])

    def _sweep(self) -> None:
        """Remove temporary files a killed writer left behind (only this run writes here)."""
        for folder in (self.folder, self.run_dir):
            for leftover in folder.glob(".*.tmp") if folder.is_dir() else ():
                leftover.unlink(missing_ok=True)

    @staticmethod
    def load(
        ref: CheckpointRef | Path | str, map_location: Any = "cpu", *, allow_pickle: bool = False
    ) -> dict[str, Any]:
        """A checkpoint's payload: tensors, state dicts and plain values only (``torch.load(weights_only=True)``,
        which runs no code); any pickled object only with ``allow_pickle``.

        Raises:
            ProgramError: the file holds other objects, and ``allow_pickle`` is off.
        """
        path = ref.path if isinstance(ref, CheckpointRef) else Path(ref)
        try:
            return torch.load(path, map_location=map_location, weights_only=not allow_pickle)
        except pickle.UnpicklingError as problem:
            if allow_pickle or "Unsupported global" not in str(problem):  # else: a damaged file
                raise
            raise ProgramError(
                [
                    Diagnostic(
                        f"'{path}' holds more than tensors, state dicts and plain values; loading it could run "
                        f"any code it holds: set {PICKLE_SETTING} to load it anyway"
                    )
                ]
            ) from None
