"""Image transforms written with torch alone."""

import numpy
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A grayscale PIL image as a (1, H, W) float tensor in [-1, 1]."""
    array = numpy.asarray(image.convert("L"), dtype=numpy.float32) / 255.0
    return torch.from_numpy(array).unsqueeze(0) * 2 - 1
