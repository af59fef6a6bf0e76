"""MVTec AD layout.

::

    root/<category>/train/good/*.png
    root/<category>/test/good/*.png
    root/<category>/test/<defect>/*.png
    root/<category>/ground_truth/<defect>/<stem>_mask.png

A defective test image without its mask is an error.
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, abs_root, category_dir, DirIndex, good_samples, mask_candidates,
                      missing_mask_error, require_dir, Sample, scan_test_folders, subdirs)

NAME = "mvtec"
__all__ = ["list_categories", "load_split", "looks_like"]


def _is_category(d: Path) -> bool:
    return (d / "train").is_dir() or (d / "test").is_dir()


def list_categories(root) -> list[str]:
    """Sub-folders of ``root`` that have a ``train/`` or ``test/`` folder, in natural order."""
    r = abs_root(root, "MVTec AD")
    return [d.name for d in subdirs(r) if _is_category(d)]


def looks_like(root: Path) -> bool:
    """Every category with ``train/good`` also has ``test/`` and ``ground_truth/`` (and there is one)."""
    cats = [d for d in subdirs(root) if (d / "train" / "good").is_dir()]
    return bool(cats) and all((d / "test").is_dir() and (d / "ground_truth").is_dir() for d in cats)


def load_split(root, category: str, split: str) -> list[Sample]:
    cat_dir = category_dir(root, category, split, "MVTec AD", list_categories)
    if split == "train":
        return good_samples(cat_dir / "train" / GOOD, category, "MVTec AD train folder")

    test_dir = require_dir(cat_dir / "test", "MVTec AD test folder")
    index = DirIndex()

    def find_mask(defect_dir: Path, image: Path) -> str:
        gt_dir = cat_dir / "ground_truth" / defect_dir.name
        names = mask_candidates(image.stem, "_mask")
        m = index.find(gt_dir, names)
        if m is None:
            raise missing_mask_error(image, [gt_dir / names[0]], "MVTec AD")
        return str(m)

    return scan_test_folders(test_dir, category, "MVTec AD test folder", find_mask)
