"""Evaluate a detector on a test split with the field's metrics.

Pixel metrics are computed at the model's input resolution (S x S): anomaly maps as the model
produces them, ground-truth masks resized with nearest-neighbour (the convention of the CPR
reference code and most of the field).
"""
from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from .data import read_image, read_mask
from .errors import InputError, first_few, one_line
from .metrics import compute_all, pro_curve

METRIC_COLUMNS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "pixel_AP")


def read_sample(sample, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A test sample's image ((H, W, 3) uint8 RGB) and its ground-truth mask at ``size`` x ``size``
    for the pixel metrics (all-zero for a good image; None for a defective image without a mask)."""
    image = read_image(sample.image_path)
    if sample.label == 1 and not sample.mask_path:
        return image, None
    mask = (read_mask(sample.mask_path, image.shape[:2], image_path=sample.image_path) if sample.mask_path
            else np.zeros(image.shape[:2], bool))
    return image, cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def evaluate_samples(detector, samples, batch_size: int = 8, progress: bool = False, by_type: bool = False,
                     curves: bool = False) -> dict:
    """Score every test sample and compute the metrics.

    Args:
        detector: a trained ``inputs.AnomalyDetector`` (``Detector`` or ``ArtifactDetector``).
        samples: list of ``cpr_engine.data.Sample`` (label 0 good / 1 defective, optional mask).
        by_type: also the metrics of each defect type (each costs another pass over the pixels).
        curves: also the PRO curve (another sort of every pixel), for plots.
    Returns:
        {"metrics": {name: float}, "images": [{"path", "label", "defect_type", "score"}], "by_type":
        {defect type: metrics over the good images and that type} (empty unless ``by_type`` and at
        least two types), "pro_curve": {"fpr": [...], "pro": [...]} up to FPR 0.3 (None unless
        ``curves`` and pixel metrics)}.
        Pixel metrics use the good images and the defective images that have a mask; they are
        left out when no defective image has one.
    Raises:
        InputError when any image or mask cannot be read (missing, corrupt, truncated, a mask of
        another size): metrics over the other images would silently describe another test set.
        Scoring stops at the first failure but every sample is still read, so the one-line message
        gives how many failed and names the first few with their reasons.
    """
    if not samples:
        raise ValueError("evaluate_samples: the test split is empty")
    size = detector.image_size
    maps, masks, rows, pixel_rows = [], [], [], []  # pixel_rows: the row of each map
    failed = []  # one-line messages of the samples that could not be read
    for i in tqdm(range(0, len(samples), batch_size), desc="evaluate", disable=not progress):
        loaded = []
        for s in samples[i:i + batch_size]:
            try:
                loaded.append((s, *read_sample(s, size)))
            except (InputError, OSError) as error:
                failed.append(one_line(error))
        if failed:  # no metrics will be given: only read the rest, to name every unreadable file
            continue
        chunk_scores, chunk_maps = detector.score_batch([image for _, image, _ in loaded])
        for (s, _, mask), score, amap in zip(loaded, chunk_scores, chunk_maps):
            rows.append({"path": str(s.image_path), "label": int(s.label), "defect_type": s.defect_type,
                         "score": float(score)})
            if mask is not None:
                pixel_rows.append(len(rows) - 1)
                maps.append(amap.astype(np.float32))
                masks.append(mask)
    if failed:
        raise InputError(f"{len(failed)} of the {len(samples)} test images cannot be read (the image or its "
                         f"ground-truth mask); no metrics computed, as they would be over a smaller test set; "
                         f"replace or remove them: {first_few(failed, sep='; ')}")
    maps, masks = (np.stack(maps), np.stack(masks)) if maps else (None, None)  # stacked once for every metric
    metrics = _metrics(rows, np.arange(len(rows)), maps, masks)
    types = sorted({r["defect_type"] for r in rows if r["label"] == 1})
    per_type = {}
    if by_type and len(types) > 1:  # good images + one defect type at a time (MVTec LOCO: logical vs structural)
        for t in types:
            keep = np.array([i for i, r in enumerate(rows) if r["label"] == 0 or r["defect_type"] == t])
            pixel = np.isin(pixel_rows, keep)
            per_type[t] = _metrics(rows, keep, None if maps is None else maps[pixel],
                                   None if masks is None else masks[pixel])
    curve = pro_curve(maps, masks) if curves and masks is not None and masks.any() else None
    return {"metrics": metrics, "by_type": per_type, "images": rows,
            "pro_curve": None if curve is None else {"fpr": curve[0].tolist(), "pro": curve[1].tolist()}}


def _metrics(rows: list[dict], keep: np.ndarray, maps: np.ndarray | None, masks: np.ndarray | None) -> dict:
    """``compute_all`` over the rows ``keep`` (image metrics) and the (M, S, S) maps / masks (pixel
    metrics, left out when no mask has a defective pixel)."""
    has_pixels = masks is not None and masks.any()
    return compute_all(np.array([rows[i]["score"] for i in keep]), np.array([rows[i]["label"] for i in keep]),
                       maps if has_pixels else None, masks if has_pixels else None)


def format_table(rows: list[dict], columns: tuple[str, ...] = METRIC_COLUMNS, key: str = "category") -> str:
    """Plain-text table: one row per dict, metric values in percent with one decimal."""
    header = [key] + [c for c in columns]
    lines = [header]
    for row in rows:
        cells = [str(row[key])]
        for c in columns:
            v = row.get(c)
            cells.append("-" if v is None else f"{100 * v:.1f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
           for line in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def mean_row(rows: list[dict], columns: tuple[str, ...] = METRIC_COLUMNS, key: str = "category") -> dict:
    """The per-column mean of rows (columns missing in some rows averaged over those that have them)."""
    mean = {key: "mean"}
    for c in columns:
        values = [r[c] for r in rows if r.get(c) is not None]
        mean[c] = float(np.mean(values)) if values else None
    return mean
