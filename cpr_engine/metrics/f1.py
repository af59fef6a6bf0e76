"""Maximum F1 score over thresholds, exact with ties, NumPy only."""
from __future__ import annotations

import numpy as np

from ._common import _Split, _image_inputs, _make_split

__all__ = ["f1_max"]


def _f1max_from_split(split: _Split) -> tuple[float, float]:
    """Best F1 = 2 TP / (TP + FP + P) over thresholds ``score >= t``.

    Lowering the threshold past a negative-only score adds FP and no TP, so the maximum is
    reached at a threshold equal to some positive's score; evaluating at every distinct
    positive score covers all candidates. Among equal maxima the highest threshold
    is returned.
    """
    tp = split.tp_ge.astype(np.float64)
    f1 = 2.0 * tp / (tp + split.fp_ge + split.n_pos)
    # vals is ascending: take the last (highest-threshold) position of the maximum.
    i = f1.size - 1 - int(np.argmax(f1[::-1]))
    return float(f1[i]), float(split.vals[i])


def f1_max(scores, labels) -> tuple[float, float]:
    """Best F1 score over all thresholds, and the threshold that reaches it.

    A sample is predicted anomalous when ``score >= threshold``.

    Args:
        scores: ``(N,)`` float, higher means more anomalous. Any shape is accepted as long
            as ``labels`` has the same one (e.g. ``(N, H, W)`` maps), it is flattened.
        labels: same shape as ``scores``, int (0/1) or bool, 1/True = anomalous.

    Returns:
        ``(f1, threshold)`` as Python floats; ``threshold`` is one of the given scores (the
        highest one if several thresholds give the same best F1).

    Raises:
        ValueError: mismatched shapes, empty input, NaN/inf scores, non-binary labels, or
            only one class present.
    """
    s, y = _image_inputs(scores, labels, "f1_max", "F1-max", flat_ok=True)
    return _f1max_from_split(_make_split(s, y))
