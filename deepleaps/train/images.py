"""Image grids of a batch (inputs | outputs | targets), written with Pillow."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from deepleaps.train.checkpoint import atomic_write


def _to_image(tensor: torch.Tensor, size: int) -> Image.Image:
    """A CHW or HW tensor scaled to 0..255 as a square RGB tile."""
    tensor = tensor.detach().float().cpu()
    if tensor.dim() == 3 and tensor.shape[0] in (1, 3):
        tensor = tensor.permute(1, 2, 0)
    if tensor.dim() == 3 and tensor.shape[-1] == 1:
        tensor = tensor[..., 0]
    low, high = tensor.min(), tensor.max()
    tensor = (tensor - low) / (high - low) if high > low else torch.zeros_like(tensor)
    array = (tensor * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array).convert("RGB").resize((size, size), Image.Resampling.NEAREST)


def _label_tile(text: str, size: int) -> Image.Image:
    tile = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(tile).text((4, size // 2 - 6), text, fill="black")
    return tile


def _tile(value: torch.Tensor, size: int) -> Image.Image:
    if value.dim() == 0:
        return _label_tile(str(value.item()), size)
    if value.dim() == 1:  # class scores
        return _label_tile(f"{int(value.argmax())} ({float(value.softmax(0).max()):.2f})", size)
    return _to_image(value, size)


def save_grid(path: Path, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, size: int = 64) -> None:
    """One row per sample: input, output, target."""
    rows = len(inputs)
    grid = Image.new("RGB", (3 * size, rows * size), "white")
    for row in range(rows):
        for column, value in enumerate((inputs[row], outputs[row], targets[row])):
            grid.paste(_tile(value, size), (column * size, row * size))

    def write(file):
        grid.save(file, format="PNG")

    atomic_write(Path(path), write)
