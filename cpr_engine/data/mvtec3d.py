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

from .samples import (GOOD, Sample, abs_root, check_category, check_split, DirIndex,
                      list_image_files, mask_candidates, missing_mask_error, require_dir,
                      sort_samples, subdirs)

NAME = "mvtec3d"
__all__ = ["list_categories", "load_split", "looks_like"]


def list_categories(root) -> list[str]:
    r = abs_root(root, "MVTec 3D-AD")
    return [d.name for d in subdirs(r) if (d / "train").is_dir() or (d / "test").is_dir()]


def looks_like(root: Path) -> bool:
    return any((d / "train" / GOOD / "rgb").is_dir() for d in subdirs(root))


def load_split(root, category: str, split: str) -> list[Sample]:
    check_split(split)
    r = abs_root(root, "MVTec 3D-AD")
    check_category(category, list_categories(r), r, "MVTec 3D-AD")
    cat_dir = r / category
    if split == "train":
        files = list_image_files(cat_dir / "train" / GOOD / "rgb", "MVTec 3D-AD train folder")
        return [Sample(str(f), 0, None, GOOD, category) for f in files]

    test_dir = require_dir(cat_dir / "test", "MVTec 3D-AD test folder")
    index = DirIndex()
    out: list[Sample] = []
    for d in subdirs(test_dir):
        rgb = d / "rgb"
        if not rgb.is_dir():
            raise FileNotFoundError(f"MVTec 3D-AD test folder {str(d)!r} has no 'rgb' sub-folder")
        files = list_image_files(rgb, "MVTec 3D-AD test folder", allow_empty=True)
        if d.name == GOOD:
            out += [Sample(str(f), 0, None, GOOD, category) for f in files]
            continue
        gt_dir = d / "gt"
        for f in files:
            names = mask_candidates(f.stem)
            m = index.find(gt_dir, names)
            if m is None:
                raise missing_mask_error(f, [gt_dir / names[0]], "MVTec 3D-AD")
            out.append(Sample(str(f), 1, str(m), d.name, category))
    if not out:
        raise ValueError(f"MVTec 3D-AD test folder {str(test_dir)!r} contains no images")
    return sort_samples(out)
