"""Generic folder layout (MVTec-like, but masks optional and names looser).

One category::

    <cat>/train/good/*
    <cat>/test/good/*
    <cat>/test/<defect>/*
    <cat>/ground_truth/<defect>/<stem>.png  or  <stem>_mask.png    (optional; any accepted extension)

``root`` is either such a category folder itself (its category name is the folder's name) or a
folder of such category folders. Images: png, jpg, jpeg, bmp, tif, tiff in any case. A defective
image with no mask is kept with ``mask_path=None`` (pixel metrics then cannot use it).
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, Sample, abs_root, check_category, check_split, DirIndex,
                      list_image_files, mask_candidates, require_dir, scan_test_folders, subdirs)

NAME = "folder"
__all__ = ["list_categories", "load_split", "looks_like", "is_single_category"]


def is_single_category(root: Path) -> bool:
    """True when ``root`` itself is a category folder (has ``train/``)."""
    return (root / "train").is_dir()


def looks_like(root: Path) -> bool:
    return (root / "train" / GOOD).is_dir() or any((d / "train" / GOOD).is_dir() for d in subdirs(root))


def list_categories(root) -> list[str]:
    r = abs_root(root, "folder")
    if is_single_category(r):
        return [r.name]
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / "test").is_dir()]


def _category_dir(r: Path, category: str) -> Path:
    check_category(category, list_categories(r), r, "folder")
    return r if is_single_category(r) else r / category


def load_split(root, category: str, split: str) -> list[Sample]:
    check_split(split)
    r = abs_root(root, "folder")
    cat_dir = _category_dir(r, category)
    if split == "train":
        files = list_image_files(cat_dir / "train" / GOOD, "folder-layout train folder")
        return [Sample(str(f), 0, None, GOOD, category) for f in files]

    test_dir = require_dir(cat_dir / "test", "folder-layout test folder")
    index = DirIndex()

    def find_mask(defect_dir: Path, image: Path) -> str | None:  # masks are optional here
        names = mask_candidates(image.stem) + mask_candidates(image.stem, "_mask")
        m = index.find(cat_dir / "ground_truth" / defect_dir.name, names)
        return None if m is None else str(m)

    return scan_test_folders(test_dir, category, "folder-layout test folder", find_mask)
