"""MVTec LOCO AD layout (logical and structural anomalies).

::

    root/<category>/train/good/*.png
    root/<category>/validation/good/*.png                 (kept out of training: the threshold)
    root/<category>/test/good/*.png
    root/<category>/test/<logical_anomalies|structural_anomalies>/<stem>.png
    root/<category>/ground_truth/<type>/<stem>/000.png, 001.png, ...   (one mask per defect region)

The ground truth of a defective image is the folder of its masks; their union is its mask
(``read_mask`` reads a folder so). A defective image without its mask folder is an error. The
defect type of each test sample is its folder name, so results can be split by type.
"""
from __future__ import annotations

from pathlib import Path

from .samples import (GOOD, abs_root, category_dir, good_samples, missing_mask_error, require_dir, Sample,
                      scan_test_folders, subdirs)

NAME = "mvtec_loco"
__all__ = ["list_categories", "load_split", "looks_like"]


def list_categories(root) -> list[str]:
    """Sub-folders of ``root`` that have ``train/`` or ``test/``, in natural order."""
    r = abs_root(root, "MVTec LOCO")
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / "test").is_dir()]


def looks_like(root: Path) -> bool:
    """A category with ``train/good`` whose ``ground_truth/<type>/`` holds folders (one per image)."""
    return any((d / "train" / GOOD).is_dir() and any(sub.is_dir() for t in subdirs(d / "ground_truth")
                                                     for sub in subdirs(t))
               for d in subdirs(root) if (d / "ground_truth").is_dir())


def load_split(root, category: str, split: str) -> list[Sample]:
    cat_dir = category_dir(root, category, split, "MVTec LOCO", list_categories)
    if split == "train":
        return good_samples(cat_dir / "train" / GOOD, category, "MVTec LOCO train folder")

    def find_mask(defect_dir: Path, image: Path) -> str:
        masks = cat_dir / "ground_truth" / defect_dir.name / image.stem
        if not masks.is_dir():
            raise missing_mask_error(image, [masks / "000.png"], "MVTec LOCO", any_extension=False)
        return str(masks)

    return scan_test_folders(require_dir(cat_dir / "test", "MVTec LOCO test folder"), category,
                             "MVTec LOCO test folder", find_mask)
