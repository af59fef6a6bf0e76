"""DenseNet-201 with torchvision's module names (state-dict compatible, legacy keys accepted)."""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ._common import StateDict

# Old torchvision checkpoints (the released densenet*.pth files) spell ``denselayerN.norm1`` as
# ``denselayerN.norm.1``; torchvision renames them on load, and so do we.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$"
)


def remap_legacy_keys(state: StateDict) -> dict[str, torch.Tensor]:
    """Rename old-style keys (``...denselayer1.norm.1.weight`` -> ``...denselayer1.norm1.weight``)."""
    return {_LEGACY_KEY.sub(r"\1\2", key): value for key, value in state.items()}


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv on the concatenation of all previous maps -> (B, growth, H, W)."""

    def __init__(self, in_ch: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers: (B, in_ch, H, W) -> (B, in_ch + num_layers * growth, H, W)."""

    def __init__(self, num_layers: int, in_ch: int, growth: int, bn_size: int):
        super().__init__(
            (f"denselayer{i + 1}", _DenseLayer(in_ch + i * growth, growth, bn_size))
            for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv-2x2 average pool: (B, in_ch, H, W) -> (B, out_ch, H//2, W//2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(OrderedDict(
            norm=nn.BatchNorm2d(in_ch),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_ch, out_ch, 1, bias=False),
            pool=nn.AvgPool2d(2, 2),
        ))


class DenseNet(nn.Module):
    """torchvision DenseNet: (B, 3, H, W) float32 -> (B, 1000) logits."""

    def __init__(self, growth: int, block_config: tuple[int, ...], init_features: int, bn_size: int):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv0=nn.Conv2d(3, init_features, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        ))
        channels = init_features
        for i, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}", _DenseBlock(num_layers, channels, growth, bn_size))
            channels += num_layers * growth
            if i < len(block_config):
                self.features.add_module(f"transition{i}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def densenet201() -> DenseNet:
    """torchvision ``densenet201`` architecture (growth 32, blocks 6/12/48/32), randomly initialised."""
    return DenseNet(growth=32, block_config=(6, 12, 48, 32), init_features=64, bn_size=4)
