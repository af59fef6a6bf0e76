"""Dataset-layout dispatch: :func:`detect_dataset`, :func:`list_categories`, :func:`load_split`."""
from __future__ import annotations

import os
from pathlib import Path

from . import btad, folder, mvtec, mvtec3d, mvtec_ad2, mvtec_loco, realiad, visa
from .samples import GOOD, Sample, good_samples, require_dir

__all__ = ["DATASETS", "detect_dataset", "list_categories", "load_split", "validation_samples"]

_LAYOUTS = {
    "mvtec": mvtec,
    "mvtec_ad2": mvtec_ad2,
    "mvtec_loco": mvtec_loco,
    "btad": btad,
    "mvtec3d": mvtec3d,
    "visa": visa,
    "realiad": realiad,
    "folder": folder,
}
#: layouts whose categories may hold good images kept out of training (``<cat>/validation/good``)
_VALIDATION_LAYOUTS = {"mvtec_ad2": "MVTec AD 2", "mvtec_loco": "MVTec LOCO"}
#: Dataset names accepted by :func:`list_categories` / :func:`load_split`.
DATASETS: tuple[str, ...] = tuple(_LAYOUTS)


def _layout(dataset: str):
    try:
        return _LAYOUTS[dataset]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}") from None


def detect_dataset(root) -> str:
    """Guess the layout of ``root``: one of :data:`DATASETS`.

    Checked in this order: ``split_csv/1cls.csv`` -> visa; ``realiad_jsons/*.json`` -> realiad; a ``<cat>/train/good/rgb`` folder ->
    mvtec3d; a ``<cat>/train/ok`` folder -> btad; ``<cat>/train/good`` with ``<cat>/test_public/`` ->
    mvtec_ad2; ``<cat>/ground_truth/<type>/<stem>/`` mask folders -> mvtec_loco; categories with ``train/good`` that all have ``test/`` and ``ground_truth/`` -> mvtec
    (MPDD has this layout too); ``train/good`` in root or in a sub-folder -> folder.
    Raises ``FileNotFoundError`` for a missing root and ``ValueError`` if nothing matches.
    """
    r = require_dir(os.path.abspath(os.fspath(root)), "dataset root")
    if visa.looks_like(r):
        return "visa"
    if realiad.looks_like(r):
        return "realiad"
    if (r / "train").is_dir():  # root is itself one category folder
        if (r / "train" / "good").is_dir():
            return "folder"
    else:
        if mvtec3d.looks_like(r):
            return "mvtec3d"
        if btad.looks_like(r):
            return "btad"
        if mvtec_ad2.looks_like(r):
            return "mvtec_ad2"
        if mvtec_loco.looks_like(r):
            return "mvtec_loco"
        if mvtec.looks_like(r):
            return "mvtec"
        if folder.looks_like(r):
            return "folder"
    raise ValueError(
        f"cannot tell the dataset layout of {str(r)!r}: expected split_csv/1cls.csv (VisA), "
        f"realiad_jsons/*.json (Real-IAD), "
        f"<cat>/train/good/rgb (MVTec 3D-AD), <cat>/train/ok (BTAD), <cat>/train/good + test_public (MVTec AD 2), "
        f"<cat>/ground_truth/<type>/<stem>/ (MVTec LOCO), "
        f"<cat>/train/good + test + ground_truth (MVTec AD) or [<cat>/]train/good (folder)")


def list_categories(root, dataset: str) -> list[str]:
    """Category names of a ``dataset`` laid out under ``root`` (natural order; VisA: sorted)."""
    return _layout(dataset).list_categories(root)


def load_split(root, dataset: str, category: str, split: str) -> list[Sample]:
    """Samples of one category's ``"train"`` or ``"test"`` split.

    Deterministic order: good samples first, then defect types alphabetically, files in natural
    order within each. Train splits contain good images only (``validation/`` folders are ignored).
    Errors: ``ValueError`` for an unknown dataset/category/split or an empty image folder,
    ``FileNotFoundError`` for a missing folder or (except for ``"folder"``) a missing mask.
    """
    return _layout(dataset).load_split(root, category, split)


def validation_samples(root, dataset: str, category: str) -> list[Sample]:
    """Good images of one category kept out of training (``<category>/validation/good`` of MVTec AD 2
    and MVTec LOCO), for choosing the decision threshold; [] for other layouts or without that folder.
    An existing folder without images is a ``ValueError``."""
    name = _VALIDATION_LAYOUTS.get(_layout(dataset).NAME)
    folder = Path(root) / category / "validation" / GOOD
    if name is None or not folder.is_dir():
        return []
    return good_samples(folder, category, f"{name} validation folder")
