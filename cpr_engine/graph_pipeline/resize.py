"""OpenCV's ``cv2.resize`` (INTER_AREA, INTER_LINEAR) as two matrix products, so that it runs on the device.

Both filters are separable: for a channel ``img`` (H, W), ``out = rows @ img @ cols.T`` with ``rows``
(H', H) and ``cols`` (W', W) float32 weight matrices built here from the formulas of OpenCV's
``resize.cpp`` (cell overlaps for the area filter; half-pixel centres, clamped at the borders, for
the bilinear one). On float32 images the product equals ``cv2.resize`` up to summation order. On
uint8 images OpenCV rounds the result to uint8, ties to even, except on its 2x2 area path, which
rounds ties up (``round_to_uint8`` does both), and computes bilinear weights in 11-bit fixed point.
So for uint8 images the area filter agrees exactly (up to float ties on non-integer factors) and the
bilinear one within one grey level (``tests/test_gpu_pipeline.py`` measures both).
"""
from __future__ import annotations

import math

import numpy as np

from ..preprocess import shrinks


def _scale(src: int, dst: int) -> float:
    """Source pixels per destination pixel, computed as OpenCV does (``1 / (dst / src)`` in double)."""
    return 1.0 / (dst / src)


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) float32 weights of ``cv2.INTER_AREA`` along one axis (dst < src); rows sum to 1."""
    scale = _scale(src, dst)
    m = np.zeros((dst, src), np.float32)
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s2 = min(math.floor(f2), src - 1)
        s1 = min(math.ceil(f1), s2)
        if s1 - f1 > 1e-3:
            m[d, s1 - 1] = (s1 - f1) / cell
        m[d, s1:s2] = 1.0 / cell
        if f2 - s2 > 1e-3:
            m[d, s2] = min(f2 - s2, 1.0, cell) / cell
    return m


def linear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) float32 weights of ``cv2.INTER_LINEAR`` along one axis (any sizes); rows sum to 1."""
    scale = _scale(src, dst)
    m = np.zeros((dst, src), np.float32)
    for d in range(dst):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = math.floor(f)
        f = np.float32(f - np.float32(s))
        if s < 0:
            s, f = 0, np.float32(0)
        if s >= src - 1:
            s, f = src - 1, np.float32(0)
        m[d, s] += np.float32(1) - f
        if f:
            m[d, s + 1] += f
    return m


def image_matrices(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Weights of ``preprocess.resize_image`` for an (height, width) uint8 image.

    Returns:
        rows (size, height) float32, cols (size, width) float32, and ``ties_up``: whether OpenCV rounds
        the uint8 result half up (its 2x2 area path) rather than half to even.
    """
    area = shrinks(height, width, size)
    make = area_matrix if area else linear_matrix
    return make(height, size), make(width, size), area and height == width == 2 * size


def map_matrices(size: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of ``preprocess.resize_map`` from (size, size) to (height, width): rows (height, size), cols (width, size)."""
    return linear_matrix(size, height), linear_matrix(size, width)


def resize(x, rows, cols_t):
    """(..., H, W) float32 tensor -> (..., H', W') float32: ``rows (H', H) @ x @ cols_t (W, W')``.

    Along x first, then along y, as OpenCV does.
    """
    return rows @ (x @ cols_t)


def round_to_uint8(x, ties_up: bool = False):
    """Float tensor -> the values a uint8 ``cv2.resize`` stores, as float: rounded (half to even, or half up
    with ``ties_up``) and clamped to [0, 255]."""
    return (x.add(0.5).floor_() if ties_up else x.round()).clamp_(0, 255)
