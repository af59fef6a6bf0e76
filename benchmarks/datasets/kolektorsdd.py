"""Convert KolektorSDD (YOLOv8 segmentation copy) into the MVTec AD layout.

Usage:
    python -m benchmarks.datasets.kolektorsdd --out DIR (--repo GITDIR | --src EXTRACTED) [--seed 0]
        [--max-side N] [--force]

Source: github.com/stoy95536/KolektorSDD_Yolov8_Datasets (CC BY-NC-SA 4.0: never copy the images into
this repository). ``EXTRACTED`` holds ``Datasets/images/{train,val}/NNN.jpg``, ``Datasets/labels/{train,
val}/NNN.txt`` (YOLO lines ``class x1 y1 x2 y2 ...`` polygon or ``class cx cy w h`` box, normalised; an empty
or missing label file is a good image) and ``Datasets/data.yaml`` (``names: [...]``, one class). All good
images (train and val together) are shuffled with ``--seed``: the first 2/3 go to ``train/good``, the rest
to ``test/good``; every defective image goes to ``test/<class name>`` with its filled-polygon mask.

The helpers here (``ConvertError``, ``extract_repo``, ``prepare_category``, ``read_grey``, ``write_sample``,
``print_counts``, ``add_common_args``, ``run_cli``) are shared with :mod:`benchmarks.datasets.deeppcb`.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

CATEGORY = "kolektorsdd"
SPLITS = ("train", "val")


class ConvertError(Exception):
    """Bad input (missing folder, unreadable image, malformed label); reported as one line, exit 2."""


def extract_repo(gitdir: Path, dest: Path, paths: tuple[str, ...]) -> Path:
    """Extract ``paths`` of the HEAD commit of git directory ``gitdir`` (bare or not) into ``dest``."""
    tar = dest / "src.tar"
    res = subprocess.run(["git", "-C", str(gitdir), "archive", "--format=tar", "-o", str(tar), "HEAD", *paths],
                         capture_output=True, text=True)
    if res.returncode:
        raise ConvertError(f"git archive failed in {gitdir}: {' '.join(res.stderr.split())}")
    with tarfile.open(tar) as t:
        t.extractall(dest / "src", filter="data")
    tar.unlink()
    return dest / "src"


def prepare_category(out: Path, category: str, force: bool) -> Path:
    """Return ``out/category``, refusing a non-empty one unless ``force`` (then it is emptied first)."""
    cat_dir = out / category
    if cat_dir.exists() and any(cat_dir.iterdir()):
        if not force:
            raise ConvertError(f"{cat_dir} is not empty (pass --force to replace it)")
        shutil.rmtree(cat_dir)
    return cat_dir


def read_grey(path: Path) -> np.ndarray:
    """Read an image as ``(H, W) uint8`` grey (both sources are grey; some DeepPCB JPEGs are stored as RGB)."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ConvertError(f"cannot read image {path}")
    return img


def write_sample(cat_dir: Path, split: str, label: str, stem: str, image: np.ndarray,
                 mask: np.ndarray | None = None, max_side: int | None = None) -> None:
    """Write ``cat_dir/split/label/stem.png`` and, when ``mask`` is given, ``ground_truth/label/stem_mask.png``.

    With ``max_side`` the image (INTER_AREA) and mask (INTER_NEAREST) are shrunk so that the longest side is at
    most ``max_side``; nothing is enlarged. The mask is written as uint8 0/255.
    """
    h, w = image.shape[:2]
    scale = max_side / max(h, w) if max_side else 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    files = [(cat_dir / split / label / f"{stem}.png", image)]
    if mask is not None:
        mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        if scale < 1:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        files.append((cat_dir / "ground_truth" / label / f"{stem}_mask.png", mask))
    for path, arr in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), arr):
            raise OSError(f"cannot write {path}")


def print_counts(cat_dir: Path) -> dict[str, int]:
    """Print and return the number of PNG files per sub-folder of ``cat_dir`` (``split/label``)."""
    counts = {f"{d.parent.name}/{d.name}": len(list(d.glob("*.png")))
              for d in sorted(cat_dir.glob("*/*")) if d.is_dir()}
    for folder, n in counts.items():
        print(f"{cat_dir.name}/{folder}: {n}")
    return counts


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Add ``--out``, ``--repo``/``--src``, ``--seed``, ``--max-side`` and ``--force`` to ``p``."""
    p.add_argument("--out", required=True, type=Path, help="output root (MVTec AD layout)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo", type=Path, help="git directory of the source repository (HEAD is extracted)")
    src.add_argument("--src", type=Path, help="extracted source repository (a work tree)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--max-side", type=int, default=None, help="shrink so the longest side is at most N")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT/<category>")


def run_cli(args: argparse.Namespace, paths: tuple[str, ...], convert_fn) -> int:
    """Run ``convert_fn(src, args)`` on ``--src`` or on ``paths`` extracted from ``--repo``; 2 on ConvertError."""
    try:
        if args.max_side is not None and args.max_side < 1:
            raise ConvertError(f"--max-side must be >= 1, got {args.max_side}")
        if args.src is not None:
            convert_fn(args.src, args)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                convert_fn(extract_repo(args.repo, Path(tmp), paths), args)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def class_names(data_yaml: Path) -> list[str]:
    """Class names from the inline ``names: [..]`` list of a YOLO ``data.yaml``."""
    if not data_yaml.is_file():
        raise ConvertError(f"missing {data_yaml}")
    m = re.search(r"^names:\s*\[([^\]]*)\]", data_yaml.read_text(encoding="utf-8"), re.M)
    if not m:
        raise ConvertError(f"no inline 'names: [...]' list in {data_yaml}")
    return [n.strip().strip("'\"") for n in m.group(1).split(",") if n.strip()]


def parse_label(text: str, n_classes: int, where: str) -> list[np.ndarray]:
    """Parse the YOLO lines of one label file into normalised ``(N, 2)`` polygons (boxes become 4 corners).

    A line is ``class x1 y1 ... xn yn`` (polygon, n >= 3) or ``class cx cy w h`` (box), normalised to [0, 1].
    ``where`` (the file name) goes into the error of a malformed line.
    """
    polys = []
    for i, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            cls, vals = int(tokens[0]), np.array(tokens[1:], dtype=float)
        except ValueError:
            raise ConvertError(f"{where}:{i}: not a YOLO line: {line[:60]!r}") from None
        if not (0 <= cls < n_classes and (len(vals) == 4 or len(vals) >= 6 and len(vals) % 2 == 0)):
            raise ConvertError(f"{where}:{i}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...' "
                               f"with class < {n_classes}, got {len(tokens)} values")
        if not np.isfinite(vals).all() or vals.min() < 0 or vals.max() > 1:
            raise ConvertError(f"{where}:{i}: coordinates must be normalised to [0, 1]")
        if len(vals) == 4:
            cx, cy, bw, bh = vals
            vals = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy - bh / 2,
                             cx + bw / 2, cy + bh / 2, cx - bw / 2, cy + bh / 2])
        polys.append(vals.reshape(-1, 2))
    return polys


def polygon_mask(polys: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Fill normalised polygons into an ``(H, W)`` uint8 0/255 mask (coordinates scaled by W and H)."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(p * (w, h)).astype(np.int32) for p in polys], 255)
    return mask


def convert(src: Path, out: Path, seed: int = 0, max_side: int | None = None, force: bool = False) -> dict:
    """Convert the extracted repository ``src`` into ``out/kolektorsdd``; return the counts per folder.

    Every label is checked before anything is written.
    """
    root = src / "Datasets"
    if not root.is_dir():
        raise ConvertError(f"missing folder {root} (pass the extracted repository)")
    names = class_names(root / "data.yaml")
    if len(names) != 1:
        raise ConvertError(f"expected one class in {root / 'data.yaml'}, got {names}")
    images = []
    for split in SPLITS:
        folder = root / "images" / split
        if not folder.is_dir():
            raise ConvertError(f"missing folder {folder}")
        images += sorted(folder.glob("*.jpg"))
    if len({p.stem for p in images}) != len(images):
        raise ConvertError(f"image names repeat across {SPLITS} in {root / 'images'}")
    good, defective = [], []
    for path in images:
        label = root / "labels" / path.parent.name / f"{path.stem}.txt"
        polys = parse_label(label.read_text(encoding="utf-8"), 1, str(label)) if label.is_file() else []
        if polys:
            defective.append((path, polys))
        else:
            good.append(path)
    cat_dir = prepare_category(out, CATEGORY, force)
    for path, polys in defective:
        image = read_grey(path)
        write_sample(cat_dir, "test", names[0], path.stem, image, polygon_mask(polys, image.shape[:2]), max_side)
    order = np.random.default_rng(seed).permutation(len(good))
    n_train = round(len(good) * 2 / 3)
    for rank, idx in enumerate(order):
        path = good[idx]
        write_sample(cat_dir, "train" if rank < n_train else "test", "good", path.stem,
                     read_grey(path), max_side=max_side)
    return print_counts(cat_dir)


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    args = p.parse_args(argv)
    return run_cli(args, ("Datasets",),
                   lambda src, a: convert(src, a.out, a.seed, a.max_side, a.force))


if __name__ == "__main__":
    sys.exit(main())
