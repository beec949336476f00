"""The example data set: 32x32 images of circles, squares and triangles."""

import csv
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from src.dataloader.transforms import to_tensor

CLASSES = ("circle", "square", "triangle")


class ExampleDataset(Dataset):
    def __init__(self, root: str = "exampleDataset", split: str = "train", transform=None):
        self.root = Path(root)
        self.transform = transform
        with open(self.root / "labels.csv", newline="") as file:
            rows = [row for row in csv.DictReader(file) if row["split"] == split]
        if not rows:
            raise ValueError(f"no '{split}' images in {self.root / 'labels.csv'}")
        # Images are small: decode them once.
        self.images = [to_tensor(Image.open(self.root / row["file"])) for row in rows]
        self.labels = [int(row["label"]) for row in rows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.tensor(self.labels[index])
