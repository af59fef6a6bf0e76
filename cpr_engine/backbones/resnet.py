"""ResNet-18 and Wide-ResNet-50-2 with torchvision's module names (state-dict compatible)."""
from __future__ import annotations

import torch
from torch import nn


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """1x1 projection shortcut (keys ``0.weight``, ``1.*``), or None for an identity shortcut."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus shortcut; (B, in_ch, H, W) -> (B, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 bottleneck; (B, in_ch, H, W) -> (B, 4*planes, H/stride, W/stride)."""

    expansion = 4
    base_width = 64  # inner width = planes * base_width / 64

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        width = planes * self.base_width // 64
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class WideBottleneck(Bottleneck):
    """Bottleneck of Wide-ResNet-*-2: twice the inner width."""

    base_width = 128


class ResNet(nn.Module):
    """torchvision ResNet: (B, 3, H, W) float32 -> (B, 1000) logits.

    ``layer1`` has stride 4 and ``64 * expansion`` channels, ``layer2`` stride 8 and twice that.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, planes, 2 if i > 0 and j == 0 else 1))
                in_ch = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18() -> ResNet:
    """torchvision ``resnet18`` architecture, randomly initialised."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def wide_resnet50_2() -> ResNet:
    """torchvision ``wide_resnet50_2`` architecture, randomly initialised."""
    return ResNet(WideBottleneck, (3, 4, 6, 3))
