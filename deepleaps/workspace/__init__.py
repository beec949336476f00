"""``deepleaps init``: the example workspace (the seed's layout) and its data set."""

from __future__ import annotations

import csv
import random
import shutil
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

#: Images per class in each split of the example data set.
COUNTS = {"train": 400, "valid": 100}
SIZE = 32


def make_workspace(directory: Path, *, seed: int = 0) -> Path:
    """Copy the template into ``directory`` (existing files are kept) and generate the data set."""
    directory.mkdir(parents=True, exist_ok=True)
    template = resources.files("deepleaps.workspace").joinpath("template")
    with resources.as_file(template) as source:
        for path in sorted(Path(source).rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            target = directory / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                shutil.copyfile(path, target)
    make_dataset(directory / "exampleDataset", seed=seed)
    return directory


def _shape(draw: ImageDraw.ImageDraw, label: int, rng: random.Random) -> None:
    radius = rng.uniform(5, 11)
    cx, cy = rng.uniform(radius + 1, SIZE - radius - 1), rng.uniform(radius + 1, SIZE - radius - 1)
    shade = rng.randint(150, 255)
    if label == 0:
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=shade)
    elif label == 1:
        draw.rectangle((cx - radius, cy - radius, cx + radius, cy + radius), fill=shade)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=shade)


def make_dataset(folder: Path, *, seed: int = 0) -> None:
    """Circles, squares and triangles on noisy backgrounds, as JPEG files plus labels.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    index = 0
    for split, count in COUNTS.items():
        for _ in range(count):
            for label in range(3):
                image = Image.new("L", (SIZE, SIZE), rng.randint(0, 60))
                _shape(ImageDraw.Draw(image), label, rng)
                noise = Image.effect_noise((SIZE, SIZE), rng.uniform(10, 30))
                image = Image.blend(image, noise, 0.15).filter(ImageFilter.GaussianBlur(0.5))
                name = f"{index:04d}.jpg"
                image.save(folder / name, quality=95)
                rows.append({"file": name, "label": label, "split": split})
                index += 1
    with (folder / "labels.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["file", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
