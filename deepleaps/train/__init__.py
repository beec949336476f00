"""The training stack: trainer container, data, checkpoints and the training commands."""

from deepleaps.train import commands
from deepleaps.train.checkpoint import CheckpointRef, CheckpointStore
from deepleaps.train.container import TrainerContainer

__all__ = ["CheckpointRef", "CheckpointStore", "TrainerContainer", "commands"]
