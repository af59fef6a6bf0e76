"""Average precision (pixel-level), exact with ties, NumPy only."""
from __future__ import annotations

import numpy as np

from ._common import _Split, _make_split, _pixel_inputs

__all__ = ["pixel_ap"]


def _ap_from_split(split: _Split) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds (scikit-learn's definition).

    Recall only grows at thresholds equal to a positive's score, and each positive raises it
    by 1/P, so AP is the mean over positives of the precision at the threshold equal to that
    positive's score; tied positives form one group weighted by its size.
    """
    tp = split.tp_ge.astype(np.float64)
    precision = tp / (tp + split.fp_ge)
    return float(np.dot(split.counts, precision) / split.n_pos)


def pixel_ap(maps, masks) -> float:
    """Pixel-level average precision over all pixels of all images pooled together.

    Uses scikit-learn's definition ``sum_n (R_n - R_{n-1}) P_n`` (no interpolation), with
    predictions ``score >= threshold`` at each distinct score.

    Args:
        maps: ``(N, H, W)`` float anomaly maps (float32 recommended for large inputs).
        masks: ``(N, H, W)`` bool (or 0/1) ground-truth masks, True = anomalous pixel.

    Returns:
        Average precision in [0, 1] as a Python float.

    Raises:
        ValueError: mismatched or non-3-D shapes, empty input, NaN/inf in maps, non-binary
            masks, masks with no anomalous (or no normal) pixel.
    """
    m, k = _pixel_inputs(maps, masks, "pixel_ap", "AP")
    return _ap_from_split(_make_split(m, k))
