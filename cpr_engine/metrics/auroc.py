"""Area under the ROC curve (image- and pixel-level), exact with ties, NumPy only."""
from __future__ import annotations

import numpy as np

from ._common import _Split, _image_inputs, _make_split, _pixel_inputs

__all__ = ["image_auroc", "pixel_auroc"]


def _auroc_from_split(split: _Split) -> float:
    """ROC AUC = P(score_pos > score_neg) + 1/2 P(score_pos == score_neg).

    Equal to the trapezoidal area under the ROC curve taken at every distinct threshold
    (what ``sklearn.metrics.roc_auc_score`` computes). The integer sums are exact.
    """
    c = split.counts
    num = int(np.dot(c, split.n_lt)) + int(np.dot(c, split.n_le))  # int64, exact
    return num / (2.0 * split.n_pos * split.n_neg)


def image_auroc(scores, labels) -> float:
    """Image-level ROC AUC.

    Args:
        scores: ``(N,)`` float, higher means more anomalous.
        labels: ``(N,)`` int (0/1) or bool, 1/True = anomalous.

    Returns:
        ROC AUC in [0, 1] as a Python float (tied scores get half credit, as in scikit-learn).

    Raises:
        ValueError: mismatched or non-1-D shapes, empty input, NaN/inf scores, non-binary
            labels, or only one class present.
    """
    s, y = _image_inputs(scores, labels, "image_auroc", "AUROC")
    return _auroc_from_split(_make_split(s, y))


def pixel_auroc(maps, masks) -> float:
    """Pixel-level ROC AUC over all pixels of all images pooled together.

    Args:
        maps: ``(N, H, W)`` float anomaly maps (float32 recommended for large inputs).
        masks: ``(N, H, W)`` bool (or 0/1) ground-truth masks, True = anomalous pixel.

    Returns:
        ROC AUC in [0, 1] as a Python float.

    Raises:
        ValueError: mismatched or non-3-D shapes, empty input, NaN/inf in maps, non-binary
            masks, masks with no anomalous (or no normal) pixel.
    """
    m, k = _pixel_inputs(maps, masks, "pixel_auroc", "AUROC")
    return _auroc_from_split(_make_split(m, k))
