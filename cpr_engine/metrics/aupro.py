"""Area under the per-region-overlap curve (AUPRO, MVTec AD convention), exact, NumPy/SciPy.

Definitions (Bergmann et al., MVTec AD, IJCV 2021):

* every 8-connected component of every ground-truth mask is one region; ``R`` regions in all;
* ``PRO(t)`` = mean over regions of the fraction of the region's pixels with ``score >= t``;
* ``FPR(t)`` = fraction of normal pixels (mask False, over all images) with ``score >= t``;
* the curve PRO vs FPR through the points of all distinct thresholds (starting at (0, 0)) is
  integrated with the trapezoid rule from FPR 0 to ``fpr_limit`` (linear interpolation at the
  limit) and divided by ``fpr_limit``.

Exact computation from one sort of the normal pixels: ``PRO(t)`` is a sum of per-pixel weights
``w_i = 1 / (area(region of i) * R)`` over anomalous pixels with ``score_i >= t``, so the area is
linear in the weights and splits into one term per anomalous pixel. With ``a_i`` (resp. ``b_i``)
the FPR just above (resp. at) the threshold ``score_i`` -- ``a_i = #neg > s_i / N``,
``b_i = #neg >= s_i / N`` -- pixel ``i`` enters the curve along the segment from ``a_i`` to
``b_i`` (a diagonal when normal pixels tie with it, a vertical step otherwise), and its share of
the area up to ``L`` is ``w_i`` times

    L - (a_i + b_i) / 2                 if b_i <= L
    (L - a_i)^2 / (2 (b_i - a_i))       if a_i < L < b_i   (the segment the limit cuts)
    0                                   if a_i >= L

which is exactly the trapezoid-with-interpolation area of the full threshold sweep.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import _Split, _make_split, _pixel_inputs

__all__ = ["pixel_aupro", "pro_curve"]

_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def _check_fpr_limit(fpr_limit, fn: str) -> float:
    try:
        lim = float(fpr_limit)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: fpr_limit must be a number in (0, 1]; got {fpr_limit!r}") from None
    if not (0.0 < lim <= 1.0):
        raise ValueError(f"{fn}: fpr_limit must be in (0, 1]; got {fpr_limit!r}")
    return lim


def _region_weights(masks: np.ndarray) -> np.ndarray:
    """Per-anomalous-pixel PRO weights ``1 / (region area * n_regions)``.

    Args:
        masks: ``(N, H, W)`` bool.

    Returns:
        ``(P,)`` float64 in the C order of ``maps[masks]``; sums to 1.
    """
    parts = []
    n_regions = 0
    for mask in masks:
        if not mask.any():
            continue
        lab, k = ndimage.label(mask, structure=_STRUCTURE_8)
        area = np.bincount(lab.ravel(), minlength=k + 1).astype(np.float64)
        parts.append(1.0 / area[lab[mask]])
        n_regions += k
    w = np.concatenate(parts)
    w /= n_regions
    return w


def _aupro_from_split(split: _Split, fpr_limit: float) -> float:
    """Normalised AUPRO from a split whose positives carry region weights (see module doc)."""
    n = split.n_neg
    lim = fpr_limit * n                       # the limit in units of negative counts
    c_gt = (n - split.n_le).astype(np.float64)  # #neg >  s_i  (= a_i * N)
    c_ge = (n - split.n_lt).astype(np.float64)  # #neg >= s_i  (= b_i * N)
    area = np.zeros_like(c_gt)
    full = c_ge <= lim
    area[full] = lim - 0.5 * (c_gt[full] + c_ge[full])
    cut = ~full & (c_gt < lim)                # here c_ge > lim > c_gt, so c_ge - c_gt > 0
    d = lim - c_gt[cut]
    area[cut] = d * d / (2.0 * (c_ge[cut] - c_gt[cut]))
    return float(np.dot(split.weights, area) / lim)


def pixel_aupro(maps, masks, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD convention).

    Regions are the 8-connected components of each image's mask (``scipy.ndimage.label`` with
    a 3x3 structure). Exact: computed from one sort of the normal pixels, no threshold sweep.

    Args:
        maps: ``(N, H, W)`` float anomaly maps (float32 recommended for large inputs).
        masks: ``(N, H, W)`` bool (or 0/1) ground-truth masks, True = anomalous pixel.
        fpr_limit: upper FPR integration limit in (0, 1]; default 0.3.

    Returns:
        AUPRO in [0, 1] as a Python float (area divided by ``fpr_limit``; a perfect map gives 1).

    Raises:
        ValueError: mismatched or non-3-D shapes, empty input, NaN/inf in maps, non-binary
            masks, masks with no anomalous (or no normal) pixel, ``fpr_limit`` not in (0, 1].
    """
    lim = _check_fpr_limit(fpr_limit, "pixel_aupro")
    m, k = _pixel_inputs(maps, masks, "pixel_aupro", "AUPRO")
    split = _make_split(m, k, pos_weights=_region_weights(k))
    return _aupro_from_split(split, lim)


def pro_curve(maps, masks, fpr_limit: float = 0.3, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve up to ``fpr_limit``, for plotting (``pixel_aupro`` is its normalised area).

    Args:
        maps, masks: as :func:`pixel_aupro`.
        fpr_limit: the largest FPR of the returned points, in (0, 1].
        max_points: at most this many points (evenly spaced along the curve, the last one kept).
    Returns:
        ``fpr``, ``pro``: ``(P,)`` float64 from (0, 0), both non-decreasing: the staircase of the
        threshold sweep, two points per anomalous pixel ``i`` (FPR of the negatives above and at
        its score, PRO without and with it), so its trapezoid area is the exact AUPRO area.
    """
    lim = _check_fpr_limit(fpr_limit, "pro_curve")
    m, k = _pixel_inputs(maps, masks, "pro_curve", "AUPRO")
    weights = _region_weights(k)
    positives, negatives = m[k], np.sort(m[~k], kind="stable")
    order = np.argsort(-positives, kind="stable")
    scores, n = positives[order], negatives.size
    above = (n - np.searchsorted(negatives, scores, side="right")) / n  # FPR just above each score
    at = (n - np.searchsorted(negatives, scores, side="left")) / n  # FPR at each score
    after = np.cumsum(weights[order])
    fpr = np.stack([above, at], 1).ravel()
    pro = np.stack([np.concatenate([[0.0], after[:-1]]), after], 1).ravel()
    keep = fpr <= lim
    fpr, pro = np.concatenate([[0.0], fpr[keep]]), np.concatenate([[0.0], pro[keep]])
    if fpr.size > max_points:
        picks = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
        fpr, pro = fpr[picks], pro[picks]
    return fpr, pro
