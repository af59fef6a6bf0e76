"""BTAD (beanTech Anomaly Detection) layout.

::

    root/<01|02|03>/train/ok/*.bmp|png
    root/<01|02|03>/test/ok/*.bmp|png
    root/<01|02|03>/test/ko/*.bmp|png
    root/<01|02|03>/ground_truth/ko/<stem>.png|bmp

Good samples get ``defect_type`` ``"good"``; defective ones ``"ko"``. A ``ko`` image without a
mask is an error.
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, abs_root, category_dir, DirIndex, good_samples, list_image_files, mask_candidates,
                      missing_mask_error, missing_masks_error, require_dir, Sample, sort_samples, subdirs)

NAME = "btad"
OK, KO = "ok", "ko"
__all__ = ["list_categories", "load_split", "looks_like"]


def list_categories(root) -> list[str]:
    """Sub-folders of ``root`` with a ``train/`` or ``test/`` folder (``01``, ``02``, ``03``)."""
    r = abs_root(root, "BTAD")
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / "test").is_dir()]


def looks_like(root: Path) -> bool:
    return any((d / "train" / OK).is_dir() for d in subdirs(root))


def load_split(root, category: str, split: str) -> list[Sample]:
    cat_dir = category_dir(root, category, split, "BTAD", list_categories)
    if split == "train":
        return good_samples(cat_dir / "train" / OK, category, "BTAD train folder")

    test_dir = require_dir(cat_dir / "test", "BTAD test folder")
    index = DirIndex()
    good = list_image_files(test_dir / OK, "BTAD test folder", allow_empty=True) \
        if (test_dir / OK).is_dir() else []
    bad = list_image_files(test_dir / KO, "BTAD test folder", allow_empty=True) \
        if (test_dir / KO).is_dir() else []
    if not good and not bad:
        raise ValueError(f"BTAD test folder {str(test_dir)!r} has no images in ok/ or ko/")
    out = [Sample(str(f), 0, None, GOOD, category) for f in good]
    gt_dir = cat_dir / "ground_truth" / KO
    missing = []
    for f in bad:
        names = mask_candidates(f.stem)
        m = index.find(gt_dir, names)
        if m is None:
            missing.append((f, missing_mask_error(f, [gt_dir / f"{f.stem}.png", gt_dir / f"{f.stem}.bmp"], "BTAD")))
        else:
            out.append(Sample(str(f), 1, str(m), KO, category))
    if missing:
        raise missing_masks_error(missing)
    return sort_samples(out)
