"""Real defects pasted onto training queries (supervised mode, method page section 7b).

With probability ``p_paste`` a training query gets 1-5 pastes. A paste takes one real defective
image with its whole mask (the region is every mask pixel, as in the CPR reference code, so a
defect made of several blobs moves as one), and

* with probability 0.5 colour-jitters the defective image (:func:`.synthesis.colour_jitter`);
* with probability 0.9 moves it: rotation by a whole number of degrees in [0, 359] and scaling by
  U(0.5, 1.5) about the mask's centroid, then a random shift that keeps the (image-clipped)
  bounding box of the moved mask inside the image; otherwise it stays where it is, unscaled;
* blends it in with a factor ``f ~ U(0.5, 1)``: ``out = (1 - f) * query + f * defect`` at the
  moved mask's pixels (rounded to uint8), and adds those pixels to the anomaly mask.
Pixels outside the pasted masks are left untouched.

NumPy + OpenCV only. All randomness comes from a ``numpy.random.Generator`` passed in, so the
pastes are deterministic for a given seed.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from ..preprocess import resize_image
from .synthesis import colour_jitter

#: Defaults of the method page: a query is a real defective image / gets real defects pasted.
P_REAL_DEFECT = 0.025
P_PASTE = 0.2
MAX_PASTES = 5
P_JITTER = 0.5
P_MOVE = 0.9
SCALE_RANGE = (0.5, 1.5)
BLEND_RANGE = (0.5, 1.0)


class Paste(NamedTuple):
    """One real defect, ready to blend into an (H, W, 3) query."""

    image: np.ndarray  # (H, W, 3) uint8: the (jittered, moved) defective image
    mask: np.ndarray  # (H, W) bool: the pixels it replaces
    factor: float  # weight of the defect in the blend, in [0.5, 1]


def check_probability(name: str, p: float) -> float:
    """``p`` as a float, or ``ValueError`` naming ``name`` when it is not in [0, 1]."""
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool; a pixel is set when any part of it was (area average > 0).

    Unlike nearest-neighbour sampling this never loses a small defect; the mask can grow by up to
    one pixel at its border, which keeps defect borders out of the positive samples.
    """
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


def defects_at_size(images: list[np.ndarray], masks: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Defect images and masks at model size.

    Args:
        images: [(H_i, W_i, 3) uint8 RGB]; masks: [(H_i, W_i) bool], as :func:`cpr_engine.data.read_defects`
            returns them.
    Returns:
        (M, size, size, 3) uint8 images (the training images' resize) and (M, size, size) bool masks.
    """
    return (np.stack([resize_image(im, size) for im in images]),
            np.stack([resize_mask(m, size) for m in masks]))


def check_defects(images: np.ndarray, masks: np.ndarray, size: int) -> None:
    """``ValueError`` unless images are (M, size, size, 3) uint8, masks (M, size, size) bool, M >= 1,
    and every mask has a defective pixel."""
    want = (size, size)
    if images.ndim != 4 or images.shape[1:] != (*want, 3) or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"defect images must be (M, {size}, {size}, 3) uint8 with M >= 1, got "
                         f"{images.shape} {images.dtype}")
    if masks.shape != images.shape[:3] or masks.dtype != np.bool_:
        raise ValueError(f"defect masks must be {images.shape[:3]} bool (one per defect image), got "
                         f"{masks.shape} {masks.dtype}")
    empty = np.flatnonzero(~masks.reshape(len(masks), -1).any(1))
    if len(empty):
        raise ValueError(f"defect masks {empty.tolist()} (of {len(masks)}) are empty at {size}x{size}")


def move_defect(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (0-359 deg) and scale (U(0.5, 1.5)) a defect about its mask's centroid, then shift it.

    Args:
        image: (H, W, 3) uint8; mask: (H, W) bool, non-empty.
    Returns:
        moved image (H, W, 3) uint8 (bilinear) and mask (H, W) bool (nearest neighbour). The
        shift keeps the moved mask's bounding box, clipped to the image, inside the image.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    centre = (float(xs.mean()), float(ys.mean()))
    angle = float(rng.integers(0, 360))
    scale = float(rng.uniform(*SCALE_RANGE))
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    moved = matrix @ np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)  # (2, P) x, y
    lo = np.maximum(np.floor(moved.min(1)).astype(int), 0)
    hi = np.minimum(np.ceil(moved.max(1)).astype(int), (w - 1, h - 1))
    matrix[0, 2] += rng.integers(-lo[0], w - hi[0])
    matrix[1, 2] += rng.integers(-lo[1], h - hi[1])
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out_mask = cv2.warpAffine(mask.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return out, out_mask


def draw_pastes(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> list[Paste]:
    """1-5 random pastes of real defects (the draws of the module docstring).

    Args:
        images: (M, H, W, 3) uint8 real defective images; masks: (M, H, W) bool, non-empty.
    Returns:
        the pastes, in the order they are to be applied.
    """
    pastes = []
    for _ in range(int(rng.integers(1, MAX_PASTES + 1))):
        j = int(rng.integers(len(images)))
        image, mask = images[j], masks[j]
        if rng.random() < P_JITTER:
            image = colour_jitter(image, rng)
        if rng.random() < P_MOVE:
            image, mask = move_defect(image, mask, rng)
        pastes.append(Paste(image, mask, float(rng.uniform(*BLEND_RANGE))))
    return pastes


def apply_pastes(image: np.ndarray, mask: np.ndarray, pastes: list[Paste]) -> tuple[np.ndarray, np.ndarray]:
    """Blend the pastes into a query, one after the other.

    Args:
        image: (H, W, 3) uint8 query; mask: (H, W) bool, its anomaly mask so far.
    Returns:
        (H, W, 3) uint8 image where each paste set ``rint((1 - f) * current + f * defect)`` at its
        mask's pixels (nothing else changes), and the (H, W) bool union of ``mask`` and the paste masks.
    """
    out, union = image.copy(), mask.copy()
    for paste in pastes:
        if paste.image.shape != image.shape or paste.mask.shape != mask.shape:
            raise ValueError(f"apply_pastes: paste of shape {paste.image.shape} / mask {paste.mask.shape} does not "
                             f"fit an image of shape {image.shape}")
        sel = paste.mask
        blend = (1.0 - paste.factor) * out[sel].astype(np.float32) + paste.factor * paste.image[sel].astype(np.float32)
        out[sel] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        union |= sel
    return out, union
