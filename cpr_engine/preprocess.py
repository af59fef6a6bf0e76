"""Image <-> model-input conversions (NumPy + OpenCV only, no torch)."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError


def shrinks(height: int, width: int, size: int) -> bool:
    """True when an (height, width) image resized to (size, size) uses the area filter (both sides shrink)."""
    return size < min(height, width)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (size, size, 3) uint8 (area filter when shrinking, bilinear otherwise)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"resize_image: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    interp = cv2.INTER_AREA if shrinks(*image.shape[:2], size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def check_image_sides(shapes: list[tuple[int, ...]], min_side: int, size: int) -> None:
    """Refuse (InputError naming the image) an image of shape (H, W, ...) whose shorter side is below ``min_side``:
    the side of the model's finest patch grid at input size ``size`` (fewer pixels than patches: no verdict)."""
    for i, (height, width, *_) in enumerate(shapes):
        if min(height, width) < min_side:
            raise InputError(f"image {i} is {width} x {height} pixels: a side below {min_side}, the "
                             f"model's finest patch grid at input size {size}, has fewer pixels than patches; "
                             "no verdict is given")


def to_model_input(images: list[np.ndarray], size: int, min_side: int = 1) -> np.ndarray:
    """List of (H_i, W_i, 3) uint8 RGB -> (B, 3, size, size) float32 in [0, 1]; images with a side below
    ``min_side`` are refused (:func:`check_image_sides`)."""
    check_image_sides([im.shape for im in images], min_side, size)
    return channels_first(np.stack([resize_image(im, size) for im in images]))


def channels_first(batch: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 RGB images already at model size -> (B, 3, S, S) float32 in [0, 1]."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def resize_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(S, S) float32 map -> (H, W) float32 at the original image size (bilinear)."""
    h, w = shape
    return cv2.resize(anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
