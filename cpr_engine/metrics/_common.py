"""Shared input checking and the sorted positive/negative split behind every metric.

All metrics here are computed from one sort of the negative (normal) scores: each positive
(anomalous) score is located in the sorted negatives by binary search, which gives, exactly
and with ties grouped, how many negatives lie strictly below it (``n_lt``) and at or below it
(``n_le``). From those two counts per positive:

* ROC AUC            = sum_i (n_lt_i + n_le_i) / (2 P N)      (tied pairs get 1/2 credit)
* precision at s_i   = TP(>= s_i) / (TP(>= s_i) + N - n_lt_i)
* AUPRO              = a weighted sum over positives (see ``aupro.py``)

This is O(n log n) (one ``np.sort`` of the negatives, ``searchsorted`` for the positives) and
never arg-sorts the full pixel array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__: list[str] = []


# --------------------------------------------------------------------------- checking
def _as_scores(x, fn: str, name: str) -> np.ndarray:
    """Real-valued array (float dtypes kept as they are, so float32 stays float32)."""
    a = np.asarray(x)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    elif a.dtype.kind == "f" and a.dtype.itemsize < 4:
        a = a.astype(np.float32)
    elif a.dtype.kind not in "iuf":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{fn}: {name} must be real numbers; got dtype {a.dtype} with shape {a.shape}"
            ) from None
    return a


def _as_binary(y, fn: str, name: str) -> np.ndarray:
    """Boolean array from bool or 0/1 (int or float) input."""
    a = np.asarray(y)
    if a.dtype.kind == "b":
        return a
    if a.dtype.kind not in "iuf":
        raise ValueError(
            f"{fn}: {name} must be binary (bool or 0/1); got dtype {a.dtype} with shape {a.shape}"
        )
    ok = (a == 0) | (a == 1)
    if not ok.all():
        bad = np.unique(a[~ok])[:5]
        raise ValueError(
            f"{fn}: {name} must be binary (bool or 0/1); found values outside {{0, 1}} "
            f"(e.g. {', '.join(repr(v.item()) for v in bad)}) with shape {a.shape}"
        )
    return a != 0


def _check_finite(a: np.ndarray, fn: str, name: str, shapes: str) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        n_nan = int(np.count_nonzero(np.isnan(a)))
        n_inf = int(a.size - n_nan - np.count_nonzero(np.isfinite(a)))
        raise ValueError(
            f"{fn}: {name} contain NaN or inf ({n_nan} NaN, {n_inf} inf of {a.size} values); "
            f"got {shapes}"
        )


def _check_classes(y: np.ndarray, fn: str, metric: str, name: str, shapes: str) -> None:
    n_pos = int(np.count_nonzero(y))
    if name == "labels":
        if n_pos == 0 or n_pos == y.size:
            cls = 0 if n_pos == 0 else 1
            raise ValueError(
                f"{fn}: labels contain only one class (all {cls}); {metric} is undefined "
                f"without both normal (0) and anomalous (1) samples; got {shapes}"
            )
    else:
        if n_pos == 0:
            raise ValueError(
                f"{fn}: masks contain no anomalous pixel (all False); {metric} is undefined; "
                f"got {shapes}"
            )
        if n_pos == y.size:
            raise ValueError(
                f"{fn}: masks contain no normal pixel (all True); {metric} is undefined; "
                f"got {shapes}"
            )


def _image_inputs(scores, labels, fn: str, metric: str, flat_ok: bool = False):
    """Validate image-level ``scores (N,)`` and ``labels (N,)``; return (float array, bool array).

    With ``flat_ok`` any matching shape is accepted and flattened (used by ``f1_max``).
    """
    s = _as_scores(scores, fn, "scores")
    shapes = f"scores shape {s.shape} and labels shape {np.shape(labels)}"
    y = _as_binary(labels, fn, "labels")
    if s.shape != y.shape:
        raise ValueError(f"{fn}: scores and labels must have the same shape; got {shapes}")
    if not flat_ok and s.ndim != 1:
        raise ValueError(f"{fn}: expected 1-D scores and labels of shape (N,); got {shapes}")
    if s.size == 0:
        raise ValueError(f"{fn}: empty input; got {shapes}")
    _check_finite(s, fn, "scores", shapes)
    _check_classes(y, fn, metric, "labels", shapes)
    return s.reshape(-1), y.reshape(-1)


def _pixel_inputs(maps, masks, fn: str, metric: str):
    """Validate ``maps (N, H, W)`` float and ``masks (N, H, W)`` bool; return (maps, bool masks)."""
    m = _as_scores(maps, fn, "maps")
    shapes = f"maps shape {m.shape} and masks shape {np.shape(masks)}"
    k = _as_binary(masks, fn, "masks")
    if m.shape != k.shape:
        raise ValueError(f"{fn}: maps and masks must have the same shape (N, H, W); got {shapes}")
    if m.ndim != 3:
        raise ValueError(f"{fn}: expected maps and masks of shape (N, H, W); got {shapes}")
    if m.size == 0:
        raise ValueError(f"{fn}: empty input; got {shapes}")
    _check_finite(m, fn, "maps", shapes)
    _check_classes(k, fn, metric, "masks", shapes)
    return m, k


# --------------------------------------------------------------------------- sorted split
@dataclass
class _Split:
    """Both classes sorted, positives grouped by distinct score.

    ``pos`` (P,) and ``neg`` (N,) are ascending. The U distinct positive scores form groups
    ``vals`` (U,) with ``counts`` (U,) and ``starts`` (U,) (index of each group's first element
    in ``pos``); ``weights`` (U,) float64 is the sum of the positives' weights per group when
    weights were given. Everything a metric needs is a per-group quantity, so ties cost nothing.
    """

    pos: np.ndarray
    neg: np.ndarray
    vals: np.ndarray
    counts: np.ndarray
    starts: np.ndarray
    weights: np.ndarray | None = None
    _n_lt: np.ndarray | None = None
    _n_le: np.ndarray | None = None

    @property
    def n_pos(self) -> int:
        return int(self.pos.size)

    @property
    def n_neg(self) -> int:
        return int(self.neg.size)

    @property
    def n_lt(self) -> np.ndarray:
        """(U,) int64: number of negatives with score < vals[g]."""
        if self._n_lt is None:
            self._n_lt = np.searchsorted(self.neg, self.vals, side="left")
        return self._n_lt

    @property
    def n_le(self) -> np.ndarray:
        """(U,) int64: number of negatives with score <= vals[g]."""
        if self._n_le is None:
            self._n_le = np.searchsorted(self.neg, self.vals, side="right")
        return self._n_le

    @property
    def tp_ge(self) -> np.ndarray:
        """(U,) int64: number of positives with score >= vals[g]."""
        return self.n_pos - self.starts

    @property
    def fp_ge(self) -> np.ndarray:
        """(U,) int64: number of negatives with score >= vals[g]."""
        return self.n_neg - self.n_lt


def _make_split(scores: np.ndarray, labels: np.ndarray, pos_weights: np.ndarray | None = None) -> _Split:
    """Split validated ``scores``/``labels`` (same shape, labels bool) into sorted classes.

    ``pos_weights`` (float, one per positive in C order of ``scores[labels]``) follow the
    positives' sort and are summed per distinct score. Memory: one copy of the negatives
    (sorted in place), one of the positives, and a temporary boolean of the inverted labels.
    """
    pos = scores[labels]
    neg = scores[~labels]
    neg.sort()
    w = None
    if pos_weights is None:
        pos.sort()
    else:
        order = np.argsort(pos)  # ties in any order: only per-group sums are used
        pos = pos[order]
        w = np.asarray(pos_weights, dtype=np.float64)[order]
        del order
    new_group = np.empty(pos.size, dtype=bool)
    new_group[:1] = True
    np.not_equal(pos[1:], pos[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    del new_group
    counts = np.diff(starts, append=pos.size)
    return _Split(
        pos=pos,
        neg=neg,
        vals=pos[starts],
        counts=counts,
        starts=starts,
        weights=None if w is None else np.add.reduceat(w, starts),
    )
