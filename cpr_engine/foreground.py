"""Foreground ("non-background") probability for object categories (method page, section 4).

2-means on the stride-4 backbone features; the cluster dominating the image border is background.
A 2-class LDA separates border background samples from centre foreground samples; its decision
function, min-max normalized on training pixels with 1 % trimmed at each end and clamped to
[0, 1], is a 1x1 convolution.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

BORDER_FRACTION = 3 / 80
CENTRE_HALF_FRACTION = 1 / 5
TRIM_QUANTILE = 0.01
MIN_SAMPLES_PER_CLASS = 16


def evidence_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Border band and centre square of an (h, w) map, as (h, w) bool arrays."""
    band_h, band_w = max(1, round(h * BORDER_FRACTION)), max(1, round(w * BORDER_FRACTION))
    border = np.zeros((h, w), bool)
    border[:band_h] = border[-band_h:] = True
    border[:, :band_w] = border[:, -band_w:] = True
    centre = np.zeros((h, w), bool)
    ch, cw = max(1, round(h * CENTRE_HALF_FRACTION)), max(1, round(w * CENTRE_HALF_FRACTION))
    centre[max(0, h // 2 - ch):h // 2 + ch, max(0, w // 2 - cw):w // 2 + cw] = True
    return border, centre


def fit_foreground(features: torch.Tensor, max_samples: int = 15_000, seed: int = 0):
    """Fit the foreground map on training features.

    Args:
        features: (N, C, H, W) float32 stride-4 backbone features of the training images.
        max_samples: at most this many samples per class for the LDA.
        seed: sampling seed.
    Returns:
        ``(weight (C,) float32, bias float)`` of the 1x1 convolution giving the foreground map
        before clamping, or ``None`` when border and centre cannot be told apart (too few samples
        of a class); the caller then treats every pixel as foreground.
    """
    from sklearn.cluster import KMeans
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n, c, h, w = features.shape
    rng = np.random.default_rng(seed)
    x = features.permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy().astype(np.float32)
    fit_rows = rng.choice(len(x), size=min(len(x), 50_000), replace=False)
    kmeans = KMeans(2, n_init=10, random_state=seed).fit(x[fit_rows])
    ids = kmeans.predict(x).reshape(n, h, w)
    border, centre = evidence_masks(h, w)
    background_id = np.bincount(ids[:, border].ravel(), minlength=2).argmax()
    is_bg = ids == background_id
    flat = np.arange(n * h * w).reshape(n, h, w)
    bg_rows = flat[is_bg & border[None]]
    fg_rows = flat[~is_bg & centre[None]]
    if min(len(bg_rows), len(fg_rows)) < MIN_SAMPLES_PER_CLASS:
        log.warning("foreground: %d background / %d foreground samples; foreground branch disabled",
                    len(bg_rows), len(fg_rows))
        return None
    bg_rows = rng.choice(bg_rows, size=min(len(bg_rows), max_samples), replace=False)
    fg_rows = rng.choice(fg_rows, size=min(len(fg_rows), max_samples), replace=False)
    lda = LinearDiscriminantAnalysis().fit(
        np.concatenate([x[bg_rows], x[fg_rows]]),
        np.concatenate([np.zeros(len(bg_rows)), np.ones(len(fg_rows))]))
    decision = x[fit_rows] @ lda.coef_[0] + lda.intercept_[0]
    lo, hi = np.quantile(decision, [TRIM_QUANTILE, 1 - TRIM_QUANTILE])
    scale = 1.0 / max(hi - lo, 1e-12)
    weight = torch.from_numpy((lda.coef_[0] * scale).astype(np.float32))
    return weight, float((lda.intercept_[0] - lo) * scale)


def foreground_map(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Foreground probability per location.

    Args:
        features: (B, C, H, W) float32 stride-4 features.
        weight: (C,) float32; bias: () float32.
    Returns:
        (B, H, W) float32 in [0, 1].
    """
    return (torch.einsum("bchw,c->bhw", features, weight) + bias).clamp(0.0, 1.0)
