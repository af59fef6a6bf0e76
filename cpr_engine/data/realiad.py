"""Real-IAD layout (multi-view industrial objects), read through its per-object JSON lists.

::

    root/realiad_jsons/<object>.json        {"train": [entry, ...], "test": [entry, ...], ...}
    root/<image root>/<object>/OK|NG/...    the images; <image root> is the first of realiad_1024,
                                            realiad_512, realiad_256, realiad_raw that holds the
                                            object (else root itself)

Each entry has ``image_path`` and ``mask_path`` (relative to the image root; ``mask_path`` null
for good images) and ``anomaly_class`` (``"OK"`` for good, else the defect code). Every view
(camera C1..C5) is one sample, the single-view setting. Training uses the ``"OK"`` entries of the
train list. A defective entry without its mask on disk is an error (one error names them all).
Written from the data set's documented JSON format; not checked against the real download here.
"""
from __future__ import annotations

import json
from pathlib import Path

from .samples import (GOOD, Sample, abs_root, check_category, check_split, missing_mask_error, missing_masks_error,
                      sort_samples)

NAME = "realiad"
JSONS = "realiad_jsons"
IMAGE_ROOTS = ("realiad_1024", "realiad_512", "realiad_256", "realiad_raw")
OK = "OK"
__all__ = ["list_categories", "load_split", "looks_like"]


def looks_like(root: Path) -> bool:
    return (root / JSONS).is_dir() and any((root / JSONS).glob("*.json"))


def list_categories(root) -> list[str]:
    """The objects: one JSON list each under ``realiad_jsons/``, sorted."""
    r = abs_root(root, "Real-IAD")
    return sorted(p.stem for p in (r / JSONS).glob("*.json")) if (r / JSONS).is_dir() else []


def _image_root(root: Path, category: str) -> Path:
    return next((root / d for d in IMAGE_ROOTS if (root / d / category).is_dir()), root)


def load_split(root, category: str, split: str) -> list[Sample]:
    check_split(split)
    r = abs_root(root, "Real-IAD")
    check_category(category, list_categories(r), r, "Real-IAD")
    listing = r / JSONS / f"{category}.json"
    try:
        entries = json.loads(listing.read_text())[split]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"Real-IAD list {str(listing)!r} has no readable {split!r} list ({type(e).__name__}: {e})") from None
    images = _image_root(r, category)
    out, missing = [], []
    for entry in entries:
        image, good = images / entry["image_path"], entry.get("anomaly_class") == OK
        if not image.is_file():
            raise FileNotFoundError(f"Real-IAD image {str(image)!r} listed in {str(listing)!r} does not exist")
        if good:
            out.append(Sample(str(image), 0, None, GOOD, category))
        elif split == "test":
            mask = images / entry["mask_path"] if entry.get("mask_path") else None
            if mask is None or not mask.is_file():
                missing.append((image, missing_mask_error(image, [mask or image.with_suffix(".png")], "Real-IAD",
                                                          any_extension=False)))
            else:
                out.append(Sample(str(image), 1, str(mask), str(entry["anomaly_class"]), category))
    if missing:
        raise missing_masks_error(missing)
    if not out:
        raise ValueError(f"Real-IAD list {str(listing)!r} gives no usable {split} images")
    return sort_samples(out)
