"""The :class:`Sample` record shared by all dataset layouts, plus small file-listing helpers.

NumPy/stdlib only (no torch): the layouts are used by a torch-free runtime too.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..errors import InputError, first_few

__all__ = [
    "Sample",
    "IMAGE_EXTENSIONS",
    "GOOD",
    "is_image_file",
    "natural_key",
    "list_image_files",
    "require_dir",
    "find_file_casefold",
    "DirIndex",
    "sort_samples",
    "check_split",
    "check_category",
    "subdirs",
    "abs_root",
    "category_dir",
    "good_samples",
    "mask_candidates",
    "missing_mask_error",
    "missing_masks_error",
    "scan_test_folders",
]

#: Accepted image extensions (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: ``defect_type`` of every defect-free sample, whatever the dataset calls it ("good", "ok", "normal").
GOOD = "good"

_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split.

    ``image_path``/``mask_path`` are absolute paths. The loaders give ``mask_path=None`` to every
    good image (an all-zero mask is implied) and to defective images of the generic folder
    layout that have no mask. ``label`` is 0 for good,
    1 for defective. ``defect_type`` is ``"good"`` for good images (normalised across datasets),
    else the dataset's defect name (folder name; ``"ko"`` for BTAD, ``"anomaly"`` for VisA).
    """

    image_path: str
    label: int
    mask_path: str | None
    defect_type: str
    category: str

    def __post_init__(self):
        if self.label not in (0, 1):
            raise InputError(f"Sample.label must be 0 (good) or 1 (defective), got {self.label!r} "
                             f"for {self.image_path}")


def is_image_file(name: str | os.PathLike) -> bool:
    """True for a non-hidden file name with an accepted image extension (any case)."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key ordering ``img2`` before ``img10``; ties broken by the plain name (deterministic)."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")
    return (key, name)


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Return ``Path(path)`` if it is a directory, else raise ``FileNotFoundError`` naming it
    (an empty string is not read as the current folder)."""
    if os.fspath(path) == "":
        raise FileNotFoundError(f"{what}: the path is empty")
    p = Path(path)
    if not p.is_dir():
        reason = "is not a directory" if p.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {str(p)!r} {reason}")
    return p


def list_image_files(folder: str | os.PathLike, what: str = "image folder",
                     allow_empty: bool = False) -> list[Path]:
    """Image files directly inside ``folder`` in natural order.

    Raises ``FileNotFoundError`` if the folder is missing and ``ValueError`` if it holds no image
    (unless ``allow_empty``). Hidden files (``.DS_Store``, ``._x.png``) are skipped.
    """
    d = require_dir(folder, what)
    files = [e for e in d.iterdir() if is_image_file(e.name) and e.is_file()]
    files.sort(key=lambda e: natural_key(e.name))
    if not files and not allow_empty:
        raise InputError(f"{what} {str(d)!r} contains no images "
                         f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return files


def subdirs(folder: Path) -> list[Path]:
    """Non-hidden sub-directories of ``folder`` in natural order."""
    out = [e for e in folder.iterdir() if e.is_dir() and not e.name.startswith(".")]
    out.sort(key=lambda e: natural_key(e.name))
    return out


class DirIndex:
    """Case-insensitive file-name lookup in folders, each folder listed once (for mask pairing)."""

    def __init__(self):
        self._index: dict[Path, dict[str, Path]] = {}

    def _listing(self, folder: Path) -> dict[str, Path]:
        idx = self._index.get(folder)
        if idx is None:
            idx = {}
            if folder.is_dir():
                for e in sorted(folder.iterdir(), key=lambda e: e.name):
                    if e.is_file():
                        idx.setdefault(e.name.lower(), e)
            self._index[folder] = idx
        return idx

    def find(self, folder: Path, names: Iterable[str]) -> Path | None:
        """First of ``names`` present in ``folder`` (case-insensitive match); ``None`` if none."""
        idx = self._listing(folder)
        for n in names:
            hit = idx.get(n.lower())
            if hit is not None:
                return hit
        return None


def find_file_casefold(folder: Path, names: Iterable[str]) -> Path | None:
    """First of ``names`` present in ``folder``, matching case-insensitively; ``None`` if none."""
    return DirIndex().find(folder, names)


def sort_samples(samples: Iterable[Sample]) -> list[Sample]:
    """Deterministic order: good first, then defect types alphabetically, each in natural file order."""
    return sorted(samples, key=lambda s: (s.label, s.defect_type,
                                          natural_key(os.path.basename(s.image_path)), s.image_path))


def check_split(split: str) -> str:
    if split not in _SPLITS:
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    return split


def check_category(category: str, available: list[str], root: str | os.PathLike, dataset: str) -> None:
    if category not in available:
        raise InputError(f"unknown {dataset} category {category!r} under {str(root)!r}; "
                         f"available: {available if available else 'none found'}")


def abs_root(root: str | os.PathLike, dataset: str) -> Path:
    """Absolute root path (not symlink-resolved), which must be a directory."""
    return require_dir(os.path.abspath(os.fspath(root)), f"{dataset} dataset root")


def category_dir(root, category: str, split: str, dataset: str,
                 list_categories: Callable[[Path], list[str]]) -> Path:
    """``root/category`` after checking the split name, the root and that the category exists."""
    check_split(split)
    r = abs_root(root, dataset)
    check_category(category, list_categories(r), r, dataset)
    return r / category


def good_samples(folder: Path, category: str, what: str) -> list[Sample]:
    """Label-0 samples of every image in ``folder`` (a train split), in natural order."""
    return [Sample(str(f), 0, None, GOOD, category) for f in list_image_files(folder, what)]


def mask_candidates(stem: str, suffix: str = "") -> list[str]:
    """File names ``<stem><suffix><ext>`` for every accepted extension, ``.png`` first."""
    return [f"{stem}{suffix}{ext}" for ext in IMAGE_EXTENSIONS]


def missing_mask_error(image: Path, tried: list[Path], dataset: str,
                       any_extension: bool = True) -> FileNotFoundError:
    shown = ", ".join(repr(str(t)) for t in tried)
    note = " (with any accepted image extension, case-insensitive)" if any_extension else ""
    return FileNotFoundError(f"{dataset}: defective image {str(image)!r} has no ground-truth mask; "
                             f"looked for {shown}{note}")


def missing_masks_error(missing: list[tuple[Path, FileNotFoundError]]) -> FileNotFoundError:
    """One error for every defective image of a split without its ground-truth mask.

    ``missing``: ``(image, error)`` pairs in split order, at least one. The first error in full, then
    how many images have no mask in all and the next few of them.
    """
    (_, first), rest = missing[0], missing[1:]
    if not rest:
        return first
    return FileNotFoundError(f"{first}; {len(missing)} defective images have no ground-truth mask in all, also "
                             f"{first_few(repr(str(image)) for image, _ in rest)}")


def scan_test_folders(test_dir: Path, category: str, what: str,
                      find_mask: Callable[[Path, Path], str | None], image_subdir: str = "",
                      skip: tuple[str, ...] = ()) -> list[Sample]:
    """Samples of ``test_dir/<good|defect>/[image_subdir]/*``, sorted; sub-folders named in ``skip``
    (e.g. a ground-truth folder inside the test folder) are not image folders.

    ``find_mask(defect_dir, image)`` returns the mask path of a defective image, ``None`` where the
    layout allows a missing mask, or raises ``FileNotFoundError`` where it does not: every image
    without its mask is found, then one error names them (:func:`missing_masks_error`). ``what``
    names the folder in errors.
    """
    out: list[Sample] = []
    missing: list[tuple[Path, FileNotFoundError]] = []
    for d in (d for d in subdirs(test_dir) if d.name not in skip):
        folder = d / image_subdir if image_subdir else d
        if image_subdir and not folder.is_dir():
            raise FileNotFoundError(f"{what} {str(d)!r} has no {image_subdir!r} sub-folder")
        files = list_image_files(folder, what, allow_empty=True)
        if d.name == GOOD:
            out += [Sample(str(f), 0, None, GOOD, category) for f in files]
            continue
        for f in files:
            try:
                out.append(Sample(str(f), 1, find_mask(d, f), d.name, category))
            except FileNotFoundError as error:
                missing.append((f, error))
    if missing:
        raise missing_masks_error(missing)
    if not out:
        raise InputError(f"{what} {str(test_dir)!r} contains no images")
    return sort_samples(out)
