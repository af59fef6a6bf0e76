"""VisA layout, read through its official split file ``root/split_csv/1cls.csv``.

The CSV has the columns ``object,split,label,image,mask``; ``split`` is ``train``/``test``,
``label`` is ``normal``/``anomaly`` and ``image``/``mask`` are paths relative to ``root`` (e.g.
``candle/Data/Images/Anomaly/000.JPG``). Normal samples get ``defect_type`` ``"good"`` and no mask;
anomalous ones ``"anomaly"`` (the split file carries no finer defect type). An anomalous row whose
mask is empty or missing on disk is an error (one error names every such row of the split), as is an
image listed but not on disk.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .samples import (GOOD, Sample, abs_root, check_category, check_split, missing_mask_error,
                      missing_masks_error, sort_samples)

NAME = "visa"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
ANOMALY = "anomaly"
_COLUMNS = ("object", "split", "label", "image", "mask")
__all__ = ["list_categories", "load_split", "looks_like", "SPLIT_CSV"]


def looks_like(root: Path) -> bool:
    return (root / SPLIT_CSV).is_file()


def _rows(root: Path) -> list[tuple[int, dict]]:
    path = root / SPLIT_CSV
    if not path.is_file():
        raise FileNotFoundError(f"VisA split file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(f"VisA split file {str(path)!r} lacks column(s) {missing}; "
                             f"expected {list(_COLUMNS)}, found {header}")
        rows = []
        for i, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not any(row.values()):
                continue
            rows.append((i, row))
    return rows


def _rel(root: Path, p: str) -> Path:
    return root / Path(p.replace("\\", "/"))


def list_categories(root) -> list[str]:
    r = abs_root(root, "VisA")
    return sorted({row["object"] for _, row in _rows(r) if row["object"]})


def load_split(root, category: str, split: str) -> list[Sample]:
    check_split(split)
    r = abs_root(root, "VisA")
    rows = _rows(r)
    check_category(category, sorted({row["object"] for _, row in rows if row["object"]}), r, "VisA")
    csv_path = r / SPLIT_CSV
    out: list[Sample] = []
    missing = []
    for line, row in rows:
        if row["object"] != category or row["split"] != split:
            continue
        label = row["label"].lower()
        if label not in ("normal", ANOMALY):
            raise ValueError(f"VisA split file {str(csv_path)!r} line {line}: label must be "
                             f"'normal' or 'anomaly', got {row['label']!r}")
        if not row["image"]:
            raise ValueError(f"VisA split file {str(csv_path)!r} line {line}: empty image path")
        img = _rel(r, row["image"])
        if not img.is_file():
            raise FileNotFoundError(f"VisA image {str(img)!r} (split file line {line}) does not exist")
        if label == "normal":
            out.append(Sample(str(img), 0, None, GOOD, category))
            continue
        mask = _rel(r, row["mask"]) if row["mask"] else None
        if mask is None:
            missing.append((img, FileNotFoundError(f"VisA: defective image {str(img)!r} has no mask path in "
                                                   f"{str(csv_path)!r} line {line}")))
        elif not mask.is_file():
            missing.append((img, missing_mask_error(img, [mask], "VisA", any_extension=False)))
        else:
            out.append(Sample(str(img), 1, str(mask), ANOMALY, category))
    if missing:
        raise missing_masks_error(missing)
    if not out:
        raise ValueError(f"VisA split file {str(csv_path)!r} has no {split!r} rows for "
                         f"category {category!r}")
    return sort_samples(out)
