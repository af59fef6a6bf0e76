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


class RawTapHead(nn.Module):
    """The untrained alternative to an LRB head: L2-normalised backbone taps as descriptors.

    The normalised taps are multiplied by a fixed ``projection`` (D, C) with orthonormal rows and
    normalised again. With D >= C it is the identity padded with zeros (cosine similarities exactly
    those of the raw taps); with D < C it keeps the D leading principal directions of the training
    taps (:meth:`fit`). Input (B, C, H, W) float32 -> output (B, D, H, W) float32, unit norm.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.register_buffer("projection", torch.eye(out_channels, in_channels))

    @torch.no_grad()
    def fit(self, taps: torch.Tensor, max_samples: int = 50_000, seed: int = 0) -> None:
        """Set ``projection`` from training taps (B, C, H, W) float32 (only needed when D < C)."""
        d, c = self.projection.shape
        if d >= c:
            self.projection.copy_(torch.eye(d, c))
            return
        vectors = F.normalize(taps, dim=1).permute(0, 2, 3, 1).reshape(-1, c)
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(vectors), generator=generator)[:max_samples].to(vectors.device)
        _, _, vh = torch.linalg.svd(vectors[rows].double(), full_matrices=False)
        self.projection.copy_(vh[:d].float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.conv2d(F.normalize(x, dim=1), self.projection[:, :, None, None]), dim=1)
