"""MVTec AD 2 layout (2025).

::

    root/<category>/train/good/*.png
    root/<category>/validation/good/*.png            (good images kept out of training: the threshold)
    root/<category>/test_public/good/*.png
    root/<category>/test_public/bad/*.png
    root/<category>/test_public/ground_truth/bad/<stem>_mask.png

The public test split is the one with labels and masks (``test_private*`` folders have none and are
ignored). A ``bad`` image without its mask is an error.
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, abs_root, category_dir, DirIndex, good_samples, mask_candidates,
                      missing_mask_error, require_dir, Sample, scan_test_folders, subdirs)

NAME = "mvtec_ad2"
TEST, GROUND_TRUTH = "test_public", "ground_truth"
__all__ = ["list_categories", "load_split", "looks_like"]


def list_categories(root) -> list[str]:
    """Sub-folders of ``root`` that have ``train/`` or ``test_public/``, in natural order."""
    r = abs_root(root, "MVTec AD 2")
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / TEST).is_dir()]


def looks_like(root: Path) -> bool:
    """A category with ``train/good`` has a ``test_public/`` folder."""
    return any((d / "train" / GOOD).is_dir() and (d / TEST).is_dir() for d in subdirs(root))


def load_split(root, category: str, split: str) -> list[Sample]:
    cat_dir = category_dir(root, category, split, "MVTec AD 2", list_categories)
    if split == "train":
        return good_samples(cat_dir / "train" / GOOD, category, "MVTec AD 2 train folder")

    test_dir = require_dir(cat_dir / TEST, "MVTec AD 2 test_public folder")
    index = DirIndex()

    def find_mask(defect_dir: Path, image: Path) -> str:
        gt_dir = test_dir / GROUND_TRUTH / defect_dir.name
        names = mask_candidates(image.stem, "_mask")
        m = index.find(gt_dir, names)
        if m is None:
            raise missing_mask_error(image, [gt_dir / names[0]], "MVTec AD 2")
        return str(m)

    return scan_test_folders(test_dir, category, "MVTec AD 2 test_public folder", find_mask, skip=(GROUND_TRUTH,))
