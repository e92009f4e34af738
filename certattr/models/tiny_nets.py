"""The tiny architectures of :mod:`certattr.models.testing`: plain torch modules that import nothing from certattr.

They live here, not in the testing module, so that :mod:`certattr.models.canonizers` can canonize them for LRP
(their residual sum and pooling, like those of torchvision's and timm's blocks) without importing test fixtures.
"""
from __future__ import annotations

import torch.nn as nn

__all__ = ["BasicBlock", "TinyResNet", "TinyVGG"]


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class TinyResNet(nn.Module):
    """conv-BN-ReLU (stride 2) -> residual block -> conv-BN-ReLU (stride 2) -> GAP -> linear. 32x32 -> 8x8."""

    def __init__(self, classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block = BasicBlock(width)
        self.last = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.fc(self.last(self.block(self.stem(x))).mean(dim=(2, 3)))


class TinyVGG(nn.Module):
    def __init__(self, classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 8 * 8, 32), nn.ReLU(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))
