"""Convert DeepPCB into the MVTec AD layout, one category ``pcb_<group>`` per group.

Usage:
    python -m benchmarks.datasets.deeppcb --out DIR (--repo GITDIR | --src EXTRACTED) [--groups 00041 ...|all]
        [--seed 0] [--max-side N] [--force]

Source: github.com/tangsanli5201/DeepPCB (MIT). ``EXTRACTED`` (or its ``PCBData`` folder) holds
``PCBData/groupG/G/NNNNNNNN_temp.jpg`` (defect-free template), ``..._test.jpg`` (the tested image, with
defects) and ``PCBData/groupG/G_not/NNNNNNNN.txt`` (one box per line, ``x1 y1 x2 y2 type``; the README writes
commas, the files use spaces: both are read; type 1-6 = open, short, mousebite, spur, copper, pin-hole).
Per group the complete pairs are shuffled with ``--seed``: the templates of the first 60% go to
``train/good``; of each remaining pair the template goes to ``test/good`` and the tested image to
``test/defect`` with all its boxes filled into ``ground_truth/defect/<stem>_mask.png``. Images are written as
grey PNGs. A pair that lacks a file, or is listed in ``EXCLUDED``, is skipped with a warning. Every label is
checked before anything is written.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from .kolektorsdd import (ConvertError, add_common_args, prepare_category, print_counts, read_grey,
                          run_cli, write_sample)

DEFAULT_GROUPS = ("00041", "13000", "20085")  # the three largest groups (221, 216 and 325 pairs)
TRAIN_FRACTION = 0.6
DEFECT = "defect"
# pairs left out: stem -> why
EXCLUDED = {"44000020": "the tested image has the ground-truth boxes and type names drawn into it (in colour)"}


def parse_boxes(text: str, where: str) -> list[tuple[int, int, int, int]]:
    """Parse one DeepPCB label file into ``(x1, y1, x2, y2)`` boxes; ``where`` goes into the error of a bad line."""
    boxes = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            x1, y1, x2, y2, kind = map(int, re.split(r"[,\s]+", line.strip()))
        except ValueError:
            raise ConvertError(f"{where}:{i}: expected 'x1 y1 x2 y2 type' (integers), got {line[:60]!r}") from None
        if not (0 <= x1 < x2 and 0 <= y1 < y2 and 1 <= kind <= 6):
            raise ConvertError(f"{where}:{i}: expected 0 <= x1 < x2, 0 <= y1 < y2 and type 1-6, got {line!r}")
        boxes.append((x1, y1, x2, y2))
    return boxes


def box_mask(boxes: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Fill boxes (corners inclusive, clipped to the image) into an ``(H, W)`` uint8 0/255 mask."""
    mask = np.zeros(shape, np.uint8)
    for x1, y1, x2, y2 in boxes:
        cv2.rectangle(mask, (x1, y1), (x2, y2), 255, thickness=-1)
    return mask


def group_pairs(root: Path, group: str) -> dict[str, list[tuple[int, int, int, int]]]:
    """Boxes per stem of every complete pair (template, tested image, label) of ``root/group<group>``."""
    img_dir, label_dir = root / f"group{group}" / group, root / f"group{group}" / f"{group}_not"
    for d in (img_dir, label_dir):
        if not d.is_dir():
            raise ConvertError(f"missing folder {d}")
    pairs = {}
    stems = sorted({p.name.rsplit("_", 1)[0] for pat in ("*_temp.jpg", "*_test.jpg") for p in img_dir.glob(pat)})
    for stem in stems:
        files = [img_dir / f"{stem}_temp.jpg", img_dir / f"{stem}_test.jpg", label_dir / f"{stem}.txt"]
        missing = [str(f.relative_to(root)) for f in files if not f.is_file()]
        why = EXCLUDED.get(stem) or (f"missing {', '.join(missing)}" if missing else "")
        if why:
            print(f"warning: skipped pair {stem}: {why}", file=sys.stderr)
            continue
        pairs[stem] = parse_boxes(files[2].read_text(encoding="utf-8"), str(files[2]))
    if not pairs:
        raise ConvertError(f"no complete pair (NNN_temp.jpg, NNN_test.jpg, {group}_not/NNN.txt) in {img_dir}")
    return pairs


def write_group(root: Path, group: str, pairs: dict, cat_dir: Path, seed: int, max_side: int | None) -> dict:
    """Split the pairs of one group with ``seed`` and write them into ``cat_dir``; return the counts."""
    img_dir = root / f"group{group}" / group
    stems = sorted(pairs)
    order = np.random.default_rng(seed).permutation(len(stems))
    n_train = round(len(stems) * TRAIN_FRACTION)
    for rank, idx in enumerate(order):
        stem = stems[idx]
        template = read_grey(img_dir / f"{stem}_temp.jpg")
        if rank < n_train:
            write_sample(cat_dir, "train", "good", stem, template, max_side=max_side)
            continue
        test = read_grey(img_dir / f"{stem}_test.jpg")
        write_sample(cat_dir, "test", "good", stem, template, max_side=max_side)
        write_sample(cat_dir, "test", DEFECT, stem, test, box_mask(pairs[stem], test.shape[:2]), max_side)
    return print_counts(cat_dir)


def convert(src: Path, out: Path, groups=DEFAULT_GROUPS, seed: int = 0, max_side: int | None = None,
            force: bool = False) -> dict[str, dict]:
    """Convert ``groups`` (``"00041"`` or ``"group00041"``; ``["all"]`` = every group) of the extracted
    repository ``src`` into ``out/pcb_<group>``; return the counts per category and folder."""
    root = src / "PCBData" if (src / "PCBData").is_dir() else src
    if not root.is_dir():
        raise ConvertError(f"missing folder {root} (pass the extracted repository)")
    if list(groups) == ["all"]:
        groups = sorted(d.name for d in root.glob("group*") if d.is_dir())
    groups = list(dict.fromkeys(g.removeprefix("group") for g in groups))
    pairs = {g: group_pairs(root, g) for g in groups}
    cat_dirs = {g: prepare_category(out, f"pcb_{g}", force) for g in groups}
    return {cat_dirs[g].name: write_group(root, g, pairs[g], cat_dirs[g], seed, max_side) for g in groups}


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS),
                   help=f"groups to convert, or 'all' (default: {' '.join(DEFAULT_GROUPS)})")
    args = p.parse_args(argv)
    return run_cli(args, ("PCBData",),
                   lambda src, a: convert(src, a.out, a.groups, a.seed, a.max_side, a.force))


if __name__ == "__main__":
    sys.exit(main())
