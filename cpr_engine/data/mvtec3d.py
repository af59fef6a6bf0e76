"""MVTec 3D-AD layout, RGB images only (the ``xyz/`` point clouds are ignored).

::

    root/<category>/train/good/rgb/*.png
    root/<category>/validation/good/rgb/*.png      (ignored: not part of train)
    root/<category>/test/good/rgb/*.png
    root/<category>/test/<defect>/rgb/*.png
    root/<category>/test/<defect>/gt/<stem>.png

Good test images have all-zero ``gt`` masks in the dataset; they get ``mask_path=None`` like
every good sample. A defective image without its mask is an error.
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, abs_root, category_dir, DirIndex, good_samples, mask_candidates,
                      missing_mask_error, require_dir, Sample, scan_test_folders, subdirs)

NAME = "mvtec3d"
__all__ = ["list_categories", "load_split", "looks_like"]


def list_categories(root) -> list[str]:
    r = abs_root(root, "MVTec 3D-AD")
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / "test").is_dir()]


def looks_like(root: Path) -> bool:
    return any((d / "train" / GOOD / "rgb").is_dir() for d in subdirs(root))


def load_split(root, category: str, split: str) -> list[Sample]:
    cat_dir = category_dir(root, category, split, "MVTec 3D-AD", list_categories)
    if split == "train":
        return good_samples(cat_dir / "train" / GOOD / "rgb", category, "MVTec 3D-AD train folder")

    test_dir = require_dir(cat_dir / "test", "MVTec 3D-AD test folder")
    index = DirIndex()

    def find_mask(defect_dir: Path, image: Path) -> str:
        names = mask_candidates(image.stem)
        m = index.find(defect_dir / "gt", names)
        if m is None:
            raise missing_mask_error(image, [defect_dir / "gt" / names[0]], "MVTec 3D-AD")
        return str(m)

    return scan_test_folders(test_dir, category, "MVTec 3D-AD test folder", find_mask, image_subdir="rgb")
