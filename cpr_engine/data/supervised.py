"""Real defective images for supervised ("few anomalies") training (method page, section 7b).

Two ways to get them, one result, a list of ``(image_path, mask_path)`` pairs:

* the benchmark protocol, :func:`split_defects`: per category the defective *test* images are
  shuffled with a fixed seed and the first ``n`` move into training, evaluation keeps the rest;
* a folder of defect images with their masks, :func:`defect_folder_pairs` (layout below).

:func:`read_defects` then reads and checks the pairs. NumPy + OpenCV/Pillow only (no torch).

Defect folder layout (pairing by file stem, any accepted image extension, case-insensitive)::

    DIR/<stem>.png                with its mask at one of (first found wins)
    DIR/masks/<stem>.png
    DIR/masks/<stem>_mask.png
    DIR/<stem>_mask.png

Files in ``DIR`` whose stem ends with ``_mask`` are masks, never defect images. A mask pixel is
defective where any channel is > 0; a mask must have its image's size and at least one such pixel.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .imageio import read_image, read_mask
from .samples import DirIndex, Sample, list_image_files, mask_candidates, missing_mask_error

__all__ = ["SPLIT_SEED", "MASK_SUFFIX", "MASK_SUBDIR", "split_defects", "relative_names",
           "defect_folder_pairs", "read_defects"]

#: Seed of the defect shuffle in the DRA / CPR protocol.
SPLIT_SEED = 42
MASK_SUFFIX = "_mask"
MASK_SUBDIR = "masks"


def split_defects(test_samples: Sequence[Sample], n: int, seed: int = SPLIT_SEED) -> tuple[list[Sample], list[Sample]]:
    """Move ``n`` defective test images into training, the DRA / CPR way.

    The defective samples (label 1), in their given order (``load_split`` order: defect types
    alphabetically, files in natural order), are shuffled with ``numpy.random.RandomState(seed)``
    exactly as ``RandomState(seed).shuffle`` does in the DRA and CPR reference code; the first
    ``n`` are moved. Good samples always stay in the test set.

    Args:
        test_samples: one category's test split.
        n: defective images to move, 0 <= n <= number of defective samples.
        seed: shuffle seed (the protocol's 42 by default).
    Returns:
        (moved, remaining): the moved samples in shuffle order, and the test samples that are left
        in their original order.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"split_defects: n must be an int, got {type(n).__name__}")
    defective = [s for s in test_samples if s.label == 1]
    category = test_samples[0].category if test_samples else "?"
    if n < 0:
        raise ValueError(f"split_defects: the number of defective images to move into training must be >= 0, "
                         f"got {n}")
    if n > len(defective):
        raise ValueError(f"split_defects: category {category!r} has {len(defective)} defective test images; "
                         f"cannot move {n} into training")
    order = np.random.RandomState(seed).permutation(len(defective))
    moved = [defective[i] for i in order[:n]]
    moved_paths = {s.image_path for s in moved}
    remaining = [s for s in test_samples if s.image_path not in moved_paths]
    return moved, remaining


def relative_names(paths: Sequence[str], root) -> list[str]:
    """Paths relative to ``root`` with '/' separators (how run files name dataset images)."""
    base = os.path.abspath(os.fspath(root))
    return [Path(os.path.relpath(os.path.abspath(p), base)).as_posix() for p in paths]


def defect_folder_pairs(folder) -> list[tuple[str, str]]:
    """``(image, mask)`` paths of a defect folder (layout in the module docstring), natural order.

    Raises ``FileNotFoundError`` for a missing folder or a defect image without a mask (naming
    the image and where its mask was looked for), ``ValueError`` for a folder without images.
    """
    root = Path(os.path.abspath(os.fspath(folder)))
    files = list_image_files(root, "defect folder", allow_empty=True)
    images = [f for f in files if not f.stem.lower().endswith(MASK_SUFFIX)]
    if not images:
        raise ValueError(f"defect folder {str(root)!r} contains no defect images (only masks or nothing); expected "
                         f"<stem>.png with its mask at {MASK_SUBDIR}/<stem>.png, {MASK_SUBDIR}/<stem>{MASK_SUFFIX}.png "
                         f"or <stem>{MASK_SUFFIX}.png")
    index = DirIndex()
    pairs = []
    for image in images:
        places = [(root / MASK_SUBDIR, mask_candidates(image.stem)),
                  (root / MASK_SUBDIR, mask_candidates(image.stem, MASK_SUFFIX)),
                  (root, mask_candidates(image.stem, MASK_SUFFIX))]
        mask = next((m for d, names in places if (m := index.find(d, names)) is not None), None)
        if mask is None:
            raise missing_mask_error(image, [d / names[0] for d, names in places], "defect folder")
        pairs.append((str(image), str(mask)))
    return pairs


def read_defects(pairs: Sequence[tuple[str, str | None]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read and check defect images and their masks.

    Args:
        pairs: ``(image_path, mask_path)``; a ``None`` mask is an error.
    Returns:
        images [(H_i, W_i, 3) uint8 RGB], masks [(H_i, W_i) bool], each mask non-empty and of its
        image's size.
    Raises:
        ``ValueError`` for no pairs or an empty mask, ``FileNotFoundError`` for a missing file or
        mask, ``ImageReadError`` (a ``ValueError``) for an unreadable file or a mask of another size.
    """
    if not pairs:
        raise ValueError("read_defects: no defect images given")
    images, masks = [], []
    for image_path, mask_path in pairs:
        if mask_path is None:
            raise FileNotFoundError(f"defect image {str(image_path)!r} has no mask; supervised training needs the "
                                    f"mask of every defect image")
        image = read_image(image_path)
        mask = read_mask(mask_path, image.shape[:2], image_path=image_path)
        if not mask.any():
            raise ValueError(f"mask {str(mask_path)!r} of defect image {str(image_path)!r} is empty (no pixel > 0); "
                             f"a defect image needs its defect marked")
        images.append(image)
        masks.append(mask)
    return images, masks
