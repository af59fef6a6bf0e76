"""Local Retrieval Branch (LRB): the learned local metric of CPR (method page, section 3)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated: 1x1; 1x1 -> 3x3; 1x1; 3x3 avg-pool -> 1x1.

    With ``width`` = 192: branches of 64 (the 3x3 branch reduces to 48 first), output 256.
    """

    def __init__(self, width: int):
        super().__init__()
        branch, reduce = width // 3, width // 4
        self.branch1 = _conv_bn_relu(width, branch)
        self.branch3 = nn.Sequential(_conv_bn_relu(width, reduce), _conv_bn_relu(reduce, branch, 3))
        self.branch1b = _conv_bn_relu(width, branch)
        self.branch_pool = _conv_bn_relu(width, branch)
        self.out_channels = 4 * branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat(
            [self.branch1(x), self.branch3(x), self.branch1b(x), self.branch_pool(pooled)], dim=1)


class LocalRetrievalBranch(nn.Module):
    """One LRB head: 1x1 conv -> hidden, BN, ReLU, Inception, 1x1 conv -> descriptor, L2-normalized.

    Args:
        in_channels: backbone channels at this tap.
        hidden: stem width (192 in the paper).
        out_channels: descriptor dimension D (384 in the paper).
    Input (B, in_channels, H, W) float32 -> output (B, D, H, W) float32 with unit norm per location.
    """

    def __init__(self, in_channels: int, hidden: int = 192, out_channels: int = 384):
        super().__init__()
        self.stem = _conv_bn_relu(in_channels, hidden)
        self.inception = InceptionBlock(hidden)
        self.head = nn.Conv2d(self.inception.out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.inception(self.stem(x))), dim=1)
