"""A small convolutional classifier."""

from torch import nn


class SimpleConv(nn.Module):
    def __init__(self, classes: int = 3, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * 8 * 8, classes)

    def forward(self, images):
        return self.head(self.features(images).flatten(1))
