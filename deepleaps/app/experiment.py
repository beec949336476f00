"""Experiment directories (docs/design.md §9): one per run, in mode new, resume or finetuning.

``<output>/<name>/run-0001/`` holds ``run.log``, ``program.dl`` (the program
the run started with), ``command.yaml`` (the command file), ``metrics.csv``,
``checkpoints/`` and ``ckp.meta``.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import attrs

from deepleaps.lang.diagnostics import Diagnostic, ProgramError
from deepleaps.train.checkpoint import CheckpointRef, CheckpointStore


class Mode(enum.Enum):
    NEW = "new"  # a fresh run directory, fresh weights
    RESUME = "resume"  # continue the latest (or the named) run where its last checkpoint stopped
    FINETUNING = "finetuning"  # a fresh run directory, weights from another run's latest checkpoint


_RUN = re.compile(r"^run-(\d+)$")


@attrs.frozen
class Experiment:
    directory: Path
    mode: Mode
    #: The checkpoint to start from: resume's own latest, finetuning's source, else None.
    start_from: CheckpointRef | None
    #: Newer runs that resume passed over because they have no checkpoint (a failed start).
    passed_over: tuple[Path, ...] = ()


def _runs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    runs = [path for path in folder.iterdir() if path.is_dir() and _RUN.match(path.name)]
    return sorted(runs, key=_number)


def _number(run: Path) -> int:
    """The number of a run directory that ``_RUN`` matches."""
    match = _RUN.match(run.name)
    assert match is not None
    return int(match.group(1))


def open_experiment(output: Path, name: str, mode: Mode | str, source: Path | None = None) -> Experiment:
    """Create or reopen the run directory for ``mode``.

    Raises:
        ProgramError: resume or finetuning with nothing to start from.
    """
    mode = Mode(mode)
    folder = output / name
    if mode is Mode.RESUME:
        return _resume(folder, source)
    start_from = None
    if mode is Mode.FINETUNING:
        if source is None:
            raise ProgramError([Diagnostic("finetuning needs the run to start from (RUN.from or --from)")])
        start_from = CheckpointStore(source).latest()
        if start_from is None:
            raise ProgramError([Diagnostic(f"cannot finetune from '{source}': it has no checkpoint")])
    runs = _runs(folder)
    number = _number(runs[-1]) + 1 if runs else 1
    directory = folder / f"run-{number:04d}"
    directory.mkdir(parents=True)
    return Experiment(directory, mode, start_from)


def _resume(folder: Path, source: Path | None) -> Experiment:
    """The named run, or else the newest run that has a checkpoint: a run that failed before
    its first checkpoint is passed over, never resumed."""
    if source is not None:
        if not source.is_dir():
            raise ProgramError([Diagnostic(f"nothing to resume: no run directory '{source}'")])
        latest = CheckpointStore(source).latest()
        if latest is None:
            raise ProgramError([Diagnostic(f"nothing to resume: '{source}' has no checkpoint")])
        return Experiment(source, Mode.RESUME, latest)
    runs = _runs(folder)
    for index in range(len(runs) - 1, -1, -1):
        latest = CheckpointStore(runs[index]).latest()
        if latest is not None:
            return Experiment(runs[index], Mode.RESUME, latest, tuple(runs[index + 1 :]))
    where = f"no run in '{folder}'" if not runs else f"no run in '{folder}' has a checkpoint"
    raise ProgramError([Diagnostic(f"nothing to resume: {where}")])
