"""Build the held-out check set: offline photos and defect kinds the demo set does not use.

Usage:
    python -m benchmarks.datasets.holdout --out DIR [--seed 7] [--n-train 100] [--n-good 20]
        [--n-defect 24] [--size 256] [--force]

Why: every default of the engine was developed on the demo set, KolektorSDD and DeepPCB; this set
exists to check the defaults on data nobody tuned them to. It was built once (seed 7) and measured
once; nothing was chosen from it (benchmarks/RESULTS.md says so where its numbers appear).

Sources (``skimage.data``, shipped offline): textures ``moon`` (512 x 512 grey),
``immunohistochemistry`` (``ihc``, 512 x 512 RGB) and ``hubble_deep_field`` (``hubble``,
872 x 1000 RGB): square crops of 1/3 .. 1/2 of the photo's short side at random positions
anywhere in the photo (training and test crops from one distribution), no rotation. Objects
``retina`` (1411 x 1411 RGB) and ``chelsea`` (300 x 451 RGB): the centred square of the photo,
jittered (shift <= 4 % of the side, rotation +-6 degrees, scale 0.95 .. 1.05, reflected border).
Every image: contrast x0.93 .. 1.07, brightness +-6 grey levels. Images are ``size`` x ``size``.

Defects, none of the demo's kinds (taking turns, area 0.4 .. 4 % drawn, mask 0.2 .. 5 % of the
image, redrawn until the mean change under the mask is >= 8 grey levels, >= 4 for ``blur``; a view
where 100 draws show none is replaced by a new view):
``blur`` (a soft irregular region Gaussian-blurred, sigma 3 .. 6 px), ``noise`` (Gaussian noise,
sigma 25 .. 40, in a soft region), ``shift`` (a brightness / colour offset of 35 .. 60 grey levels
in a soft region), ``spots`` (6 .. 15 dark or bright dots of radius 2 .. 4 px in a cluster).
Masks mark the region (``blur``/``noise``/``shift``) or the dots (``spots``).

Writes ``OUT/<category>/{train/good, test/good, test/<kind>, ground_truth/<kind>/<stem>_mask.png}``
(MVTec AD layout). A non-empty ``OUT/<category>`` is refused unless ``--force``; bad arguments give
one ``error:`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

from .kolektorsdd import ConvertError, prepare_category, print_counts, write_sample

TEXTURES = {"moon": "moon", "ihc": "immunohistochemistry", "hubble": "hubble_deep_field"}
OBJECTS = {"retina": "retina", "chelsea": "chelsea"}
CATEGORIES = (*TEXTURES, *OBJECTS)
DEFECT_KINDS = ("blur", "noise", "shift", "spots")


def _photo(category: str) -> np.ndarray:
    """(H, W, 3) float32 RGB photo of ``category`` from ``skimage.data``."""
    import skimage.data  # only this builder needs scikit-image

    photo = np.asarray(getattr(skimage.data, {**TEXTURES, **OBJECTS}[category])())
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return photo[..., :3].astype(np.float32)


def _rng(seed: int, category: str, stream: int) -> np.random.Generator:
    """One stream per (seed, category, split): 0 train, 1 good test, 2 defective test."""
    return np.random.default_rng([seed, zlib.crc32(category.encode()), stream])


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean = float(img.mean())
    return (img - mean) * rng.uniform(0.93, 1.07) + mean + rng.uniform(-6, 6)


def _texture_view(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=interp)
    return _photometric(crop, rng)


def _object_view(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    base = cv2.resize(photo[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-6, 6), rng.uniform(0.95, 1.05))
    m[:, 2] += rng.uniform(-0.04, 0.04, size=2) * size
    img = cv2.warpAffine(base, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return _photometric(img, rng)


def _blob(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """(size, size) bool irregular region of about ``area`` pixels, away from the border."""
    radius = np.sqrt(area / np.pi)
    centre = rng.uniform(0.15, 0.85, size=2) * size
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    r = radius * (1 + 0.35 * np.sin(t * rng.integers(2, 5) + rng.uniform(0, 6))) * rng.uniform(0.85, 1.15, 40)
    points = np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1).astype(np.int32)
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [points], 255)
    return region > 0


def _spots(img: np.ndarray, rng: np.random.Generator, area: float) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    dots = np.zeros((size, size), np.uint8)
    centre = rng.uniform(0.15, 0.85, size=2) * size
    spread = np.sqrt(area) / 2
    value = 0.0 if rng.random() < 0.5 else 255.0
    for _ in range(int(rng.integers(6, 16))):
        x, y = (centre + rng.normal(0, spread, 2)).astype(int)
        cv2.circle(dots, (int(x), int(y)), int(rng.integers(2, 5)), 255, -1)
    soft = cv2.GaussianBlur(dots.astype(np.float32) / 255, (0, 0), 0.8)[..., None]
    return img * (1 - soft) + value * soft, dots > 0


def _region_defect(img: np.ndarray, kind: str, rng: np.random.Generator,
                   area: float) -> tuple[np.ndarray, np.ndarray]:
    mask = _blob(rng, img.shape[0], area)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)[..., None]
    if kind == "blur":
        changed = cv2.GaussianBlur(img, (0, 0), rng.uniform(3, 6))
    elif kind == "noise":
        changed = img + rng.normal(0, rng.uniform(25, 40), img.shape).astype(np.float32)
    else:  # shift: a brightness / colour offset on one to three channels
        weights = (rng.random(3) < 0.6).astype(np.float32)
        weights[rng.integers(3)] = 1.0
        changed = img + rng.uniform(35, 60) * rng.choice([-1.0, 1.0]) * weights
    return img * (1 - soft) + changed * soft, mask


def add_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """(S, S, 3) float32 good image -> (defective image float32, (S, S) bool mask), or None when 100
    draws gave no visible defect (a blur on a smooth crop); see the module docstring."""
    size = img.shape[0]
    for _ in range(100):
        area = rng.uniform(0.004, 0.04) * size * size
        out, mask = _spots(img, rng, area) if kind == "spots" else _region_defect(img, kind, rng, area)
        change = np.abs(np.clip(out, 0, 255) - np.clip(img, 0, 255)).mean(2)
        if 0.002 <= mask.mean() <= 0.05 and change[mask].mean() >= (4 if kind == "blur" else 8):
            return out, mask
    return None


def _defective_view(make_view, photo: np.ndarray, kind: str, rng: np.random.Generator, size: int):
    """A new view with a visible ``kind`` defect: (image, mask); views where none shows are drawn again."""
    for _ in range(20):
        defective = add_defect(make_view(photo, rng, size), kind, rng)
        if defective is not None:
            return defective
    raise ConvertError(f"no visible {kind} defect on 20 views of {size} px (too small or too smooth)")


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def build(out: Path, seed: int = 7, n_train: int = 100, n_good: int = 20, n_defect: int = 24, size: int = 256,
          categories=CATEGORIES, force: bool = False) -> dict[str, dict[str, int]]:
    """Write the categories under ``out``; returns the PNG counts per category and folder."""
    for name, value, low in (("n_train", n_train, 1), ("n_good", n_good, 0), ("n_defect", n_defect, 0),
                             ("size", size, 64)):
        if value < low:
            raise ConvertError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ConvertError(f"unknown categories {unknown}; choose from {list(CATEGORIES)}")
    cat_dirs = {category: prepare_category(out, category, force) for category in categories}
    counts = {}
    for category, cat_dir in cat_dirs.items():
        photo = _photo(category)
        make_view = _texture_view if category in TEXTURES else _object_view

        def write(split, label, stem, image, mask=None):
            write_sample(cat_dir, split, label, stem, cv2.cvtColor(_u8(image), cv2.COLOR_RGB2BGR), mask)

        rng = _rng(seed, category, 0)
        for i in range(n_train):
            write("train", "good", f"{i:03d}", make_view(photo, rng, size))
        rng = _rng(seed, category, 1)
        for i in range(n_good):
            write("test", "good", f"{i:03d}", make_view(photo, rng, size))
        rng = _rng(seed, category, 2)
        for i in range(n_defect):
            kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
            image, mask = _defective_view(make_view, photo, kind, rng, size)
            write("test", kind, f"{i // len(DEFECT_KINDS):03d}", image, mask)
        counts[category] = print_counts(cat_dir)
    return counts


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root (MVTec AD layout)")
    p.add_argument("--seed", type=int, default=7, help="seed of every draw (default 7: the measured set)")
    p.add_argument("--n-train", type=int, default=100, help="good training images per category")
    p.add_argument("--n-good", type=int, default=20, help="good test images per category")
    p.add_argument("--n-defect", type=int, default=24, help="defective test images per category")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (>= 64)")
    p.add_argument("--category", nargs="+", default=list(CATEGORIES), help=f"any of {list(CATEGORIES)}")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT/<category>")
    args = p.parse_args(argv)
    try:
        build(args.out, args.seed, args.n_train, args.n_good, args.n_defect, args.size, args.category, args.force)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
