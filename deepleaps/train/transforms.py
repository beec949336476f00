"""Tensor transforms for data sets, written with torch alone; named in YAML by class name.

    data:
      train:
        dataset: {class: src.dataloader.Exampledataset.ExampleDataset, args: {split: train}}
        transform: [{name: RandomHorizontalFlip, p: 0.5}, {name: Normalize, mean: 0.0, std: 1.0}]

The list is built into a :class:`Compose` and given to the data set as its
``transform`` argument. A class path (``src.dataloader.transforms.MyTransform``)
works as well as a name from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, value):
        for transform in self.transforms:
            value = transform(value)
        return value

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """``(x - mean) / std``."""

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1) if self.mean.dim() == 1 else ()
        return (image - self.mean.view(shape)) / self.std.view(shape)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.flip(-1) if torch.rand(()) < self.p else image


class RandomVerticalFlip(RandomHorizontalFlip):
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.flip(-2) if torch.rand(()) < self.p else image


class RandomNoise:
    """Gaussian noise of standard deviation ``std``."""

    def __init__(self, std: float = 0.05):
        self.std = std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image + torch.randn_like(image) * self.std
