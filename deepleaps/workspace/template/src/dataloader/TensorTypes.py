"""Types of the tensors the example passes around."""

from torch import Tensor

#: A batch: images (N, 1, 32, 32) in [-1, 1] and class indices (N,).
Sample = tuple[Tensor, Tensor]
