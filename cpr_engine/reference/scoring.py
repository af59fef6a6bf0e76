"""Score fusion and post-processing (method page, sections 3-5): plain PyTorch reference."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fuse_scales(maps: list[torch.Tensor]) -> torch.Tensor:
    """Bilinearly upsample every per-scale map to the first (finest) one's size and sum.

    Args:
        maps: list of (B, h_s, w_s) float32 patch scores, finest first.
    Returns:
        (B, h_0, w_0) float32.
    """
    size = maps[0].shape[-2:]
    fused = maps[0]
    for m in maps[1:]:
        fused = fused + F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return fused


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """(2 * ceil(4 sigma) + 1,) float32 normalized Gaussian taps (33 taps for sigma 4)."""
    radius = math.ceil(4 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders.

    Args:
        maps: (B, H, W) float32; sigma: standard deviation in pixels (0: no blur).
    Returns:
        (B, H, W) float32.
    """
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps)
    r = k.numel() // 2
    x = maps[:, None]
    # reflect padding needs pad < size; fall back to replicate for maps smaller than the kernel
    mode = "reflect" if min(maps.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return x[:, 0]


def image_score(maps: torch.Tensor, top_t: int) -> torch.Tensor:
    """Sum of the top-T pixel values of each map.

    Args:
        maps: (B, H, W) float32; top_t: T, clipped to H * W.
    Returns:
        (B,) float32.
    """
    flat = maps.flatten(1)
    return flat.topk(min(top_t, flat.shape[1]), dim=1).values.sum(1)


def postprocess(local_maps: list[torch.Tensor], foreground: torch.Tensor | None, image_size: int,
                sigma: float, top_t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch scores of all scales -> (anomaly map, image score).

    Args:
        local_maps: per-scale (B, h_s, w_s) float32 patch scores, finest first.
        foreground: (B, h_0, w_0) float32 in [0, 1] multiplied into the fused map, or None.
        image_size: side of the output map.
        sigma: Gaussian blur sigma (pixels of the output map).
        top_t: pixels summed for the image score.
    Returns:
        anomaly_map (B, image_size, image_size) float32, pred_score (B,) float32.
    """
    fused = fuse_scales(local_maps)
    if foreground is not None:
        fused = fused * foreground
    full = F.interpolate(fused[:, None], size=(image_size, image_size), mode="bilinear",
                         align_corners=False)[:, 0]
    blurred = gaussian_blur(full, sigma)
    return blurred, image_score(blurred, top_t)
