"""All metrics at once, sharing one sort of the pixels between the pixel-level metrics."""
from __future__ import annotations

import numpy as np

from ._common import _image_inputs, _make_split, _pixel_inputs
from .ap import _ap_from_split
from .aupro import _aupro_from_split, _check_fpr_limit, _region_weights
from .auroc import _auroc_from_split
from .f1 import _f1max_from_split

__all__ = ["compute_all"]


def compute_all(image_scores, image_labels, maps=None, masks=None, *, fpr_limit: float = 0.3) -> dict[str, float]:
    """Image-level and (optionally) pixel-level metrics in one call.

    Args:
        image_scores: ``(N,)`` float, higher means more anomalous.
        image_labels: ``(N,)`` int (0/1) or bool, 1/True = anomalous.
        maps: optional ``(M, H, W)`` float anomaly maps (float32 recommended).
        masks: optional ``(M, H, W)`` bool (or 0/1) masks; required exactly when ``maps`` is given.
        fpr_limit: FPR integration limit for ``pixel_AUPRO`` (default 0.3).

    Returns:
        ``{"image_AUROC", "image_F1max"}`` and, when maps are given, also ``"pixel_AUROC"``,
        ``"pixel_AUPRO"``, ``"pixel_AP"``, ``"pixel_F1max"``; all Python floats.

    Raises:
        ValueError: as the individual metrics, or when only one of ``maps``/``masks`` is given.
    """
    s, y = _image_inputs(image_scores, image_labels, "compute_all", "image AUROC/F1")
    img = _make_split(s, y)
    out = {
        "image_AUROC": _auroc_from_split(img),
        "image_F1max": _f1max_from_split(img)[0],
    }
    if maps is None and masks is None:
        return out
    if maps is None or masks is None:
        raise ValueError(
            "compute_all: maps and masks must be given together; got "
            f"maps {'None' if maps is None else f'shape {np.shape(maps)}'} and "
            f"masks {'None' if masks is None else f'shape {np.shape(masks)}'}"
        )
    lim = _check_fpr_limit(fpr_limit, "compute_all")
    m, k = _pixel_inputs(maps, masks, "compute_all", "pixel AUROC/AUPRO/AP/F1")
    pix = _make_split(m, k, pos_weights=_region_weights(k))
    out["pixel_AUROC"] = _auroc_from_split(pix)
    out["pixel_AUPRO"] = _aupro_from_split(pix, lim)
    out["pixel_AP"] = _ap_from_split(pix)
    out["pixel_F1max"] = _f1max_from_split(pix)[0]
    return out
