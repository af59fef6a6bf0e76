"""Point-pair sampling for the local-metric loss (method page, section 6).

Coordinates are continuous pixel positions (x, y) of the S x S model input; maps of any stride
are read at them with bilinear ``grid_sample`` (``align_corners=False``), so a stride-4 map and a
stride-8 map are sampled at the same image points.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEGATIVE_CANDIDATES = 8


def gather_points(maps: torch.Tensor, xy: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear read of ``maps`` at image points.

    Args:
        maps: (B, C, h, w) float32 covering the S x S image.
        xy: (B, P, 2) float32 pixel coordinates (x, y) in [0, S).
        image_size: S.
    Returns:
        (B, C, P) float32.
    """
    grid = xy / image_size * 2.0 - 1.0
    return F.grid_sample(maps, grid[:, :, None, :], mode="bilinear", align_corners=False)[..., 0]


def sample_points(weight: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n points per image with probability proportional to ``weight``.

    Args:
        weight: (B, S, S) float32 >= 0, on the CPU (where ``generator`` lives).
        n: points per image.
    Returns:
        xy (B, n, 2) float32 (a uniform position inside the drawn pixel), valid (B, n) bool
        (False for every point of an image whose weights are all 0).
    """
    b, s, _ = weight.shape
    flat = weight.reshape(b, -1)
    valid = flat.sum(1) > 0
    safe = torch.where(valid[:, None], flat, torch.ones_like(flat))
    idx = torch.multinomial(safe, n, replacement=True, generator=generator)
    jitter = torch.rand(b, n, 2, generator=generator)
    xy = torch.stack([idx % s, idx // s], dim=-1).float() + jitter
    return xy, valid[:, None].expand(b, n)


def sample_negatives(query_xy: torch.Tensor, feat_q: torch.Tensor, feat_r: torch.Tensor, image_size: int,
                     min_dist: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick, for each query point, a reference point farther than ``min_dist`` pixels.

    Among ``NEGATIVE_CANDIDATES`` uniform candidates, one is drawn with probability proportional
    to how different the backbone features are (1 - cosine), so near-identical patches are rarely
    pushed apart.

    Args:
        query_xy: (B, P, 2) query points; feat_q, feat_r: (B, C, h, w) backbone features.
        min_dist: exclusion radius in pixels (stride * (r // 2) * sqrt(2)).
    Returns:
        ref_xy (B, P, 2) float32, valid (B, P) bool (False when every candidate was too close).
    """
    b, p, _ = query_xy.shape
    c = NEGATIVE_CANDIDATES
    cand = (torch.rand(b, p, c, 2, generator=generator) * image_size).to(query_xy.device)
    far = (cand - query_xy[:, :, None]).norm(dim=-1) > min_dist
    fq = F.normalize(gather_points(feat_q, query_xy, image_size), dim=1)  # (B, C, P)
    fr = F.normalize(gather_points(feat_r, cand.reshape(b, p * c, 2), image_size), dim=1).reshape(b, -1, p, c)
    diff = (1.0 - (fq[..., None] * fr).sum(1)).clamp(min=1e-6) * far
    valid = far.any(-1)
    safe = torch.where(valid[..., None], diff, torch.ones_like(diff))
    pick = torch.multinomial(safe.reshape(b * p, c).cpu(), 1, generator=generator).reshape(b, p)
    pick = pick.to(query_xy.device)
    ref_xy = torch.gather(cand, 2, pick[:, :, None, None].expand(b, p, 1, 2))[:, :, 0]
    return ref_xy, valid


def exclusion_radius(stride: int, window: int) -> float:
    """Pixels within which a reference point could still be a window candidate."""
    return stride * (window // 2) * math.sqrt(2.0)


def matching_points(query_xy: torch.Tensor, feat_q: torch.Tensor, feat_r: torch.Tensor, image_size: int,
                    window: int) -> torch.Tensor:
    """For each query point, the centre of the reference cell whose backbone feature matches it best
    within the search window: the positive partner on images that are not aligned.

    Args:
        query_xy: (B, P, 2) float32 pixel points (x, y); feat_q, feat_r: (B, C, h, w) backbone taps.
        window: odd window side r in cells of this tap; candidates lie within r // 2 cells (Chebyshev)
            of the query point's cell.
    Returns:
        (B, P, 2) float32 pixel points in the reference.
    """
    if window == 1:  # aligned: the same point, as in the paper
        return query_xy
    b, c, h, w = feat_r.shape
    stride = image_size / w
    fq = F.normalize(gather_points(feat_q, query_xy, image_size), dim=1)  # (B, C, P)
    fr = F.normalize(feat_r.reshape(b, c, h * w), dim=1)
    similarity = torch.einsum("bcp,bcn->bpn", fq, fr)  # (B, P, h * w)
    cell = (query_xy / stride).long().clamp(min=0)
    ys, xs = torch.arange(h * w, device=fr.device) // w, torch.arange(h * w, device=fr.device) % w
    far = torch.maximum((ys - cell[..., 1:2].clamp(max=h - 1)).abs(),
                        (xs - cell[..., 0:1].clamp(max=w - 1)).abs()) > window // 2
    best = similarity.masked_fill(far, -float("inf")).argmax(-1)  # (B, P)
    return torch.stack([best % w, best // w], dim=-1).float().add(0.5).mul(stride)
