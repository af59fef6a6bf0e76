"""Inputs and outputs shared by the PyTorch Detector and the torch-free runtime (NumPy only)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL.Image import Image as PILImage

from .data import read_image
from .data.imageio import pil_pixels, to_rgb_uint8
from .data.samples import list_image_files
from .errors import InputError, NonFiniteScoreError
from .preprocess import resize_map


class Prediction(NamedTuple):
    """Result for one image."""

    score: float  # image anomaly score (sum of the top-T blurred pixel scores)
    anomaly_map: np.ndarray  # (H, W) float32 pixel scores at the input image's resolution
    is_anomalous: bool  # score > threshold (calibrated on good training images only)


@runtime_checkable
class AnomalyDetector(Protocol):
    """What every in-process detector offers: ``Detector`` (PyTorch) and ``ArtifactDetector``
    (torch-free; ``Detector.load`` of an artifact folder returns one). Evaluation, prediction tools
    and the servers take any object with these members.
    """

    image_size: int  # S: side of the square model input (maps of score_batch are S x S)
    threshold: float  # score above it -> anomalous
    pixel_normal: tuple[float, float]  # (median, max) pixel score of the good training images
    min_image_side: int  # images with a shorter side get no verdict (fewer pixels than the finest patch grid)

    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB images -> scores (B,) float32, maps (B, S, S) float32."""

    def predict(self, images, batch_size: int = 8, color: str = "RGB"):
        """One ``Prediction`` for one image, a list for several (maps at each input's size)."""


#: Channel orders an array input may have; files are always decoded to RGB.
COLOR_ORDERS = ("RGB", "BGR")


def as_image(item, color: str = "RGB") -> np.ndarray:
    """A path, a PIL image or an array -> (H, W, 3) uint8 RGB (grayscale / RGBA / 16-bit converted).

    ``color``: channel order of an array input, "RGB" or "BGR" (BGR arrays are flipped to RGB); a PIL
    image is converted as a decoded file is (palettes expanded: not read as their indices).
    """
    if isinstance(item, (str, Path)):
        return read_image(item)
    if isinstance(item, PILImage):
        return to_rgb_uint8(pil_pixels(item))
    rgb = to_rgb_uint8(np.asarray(item))
    return np.ascontiguousarray(rgb[:, :, ::-1]) if color == "BGR" else rgb


def as_image_list(images, color: str = "RGB") -> tuple[list[np.ndarray], bool]:
    """Normalise predict/fit input to a list of (H, W, 3) uint8 RGB; second value: was it one image.

    ``color``: channel order of array inputs, "RGB" or "BGR".
    """
    if color not in COLOR_ORDERS:
        raise InputError(f"color must be one of {COLOR_ORDERS}, got {color!r}")
    if isinstance(images, memoryview):  # a buffer, not a sequence of rows
        images = np.asarray(images)
    if isinstance(images, PILImage):
        return [as_image(images, color)], True
    if isinstance(images, (str, Path)):
        if os.fspath(images) == "":
            raise InputError("the image path is empty")
        path = Path(images)
        if path.is_dir():
            return [read_image(p) for p in list_image_files(path)], False
        return [read_image(path)], True
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            if len(images) == 0:
                raise InputError(f"no images given (empty batch of shape {images.shape})")
            return [as_image(im, color) for im in images], False
        return [as_image(images, color)], True
    if isinstance(images, Sequence):
        if len(images) == 0:
            raise InputError("no images given (empty list)")
        return [as_image(im, color) for im in images], False
    raise InputError(f"expected an image array, a path, a folder or a list of them; got {type(images).__name__}")


def _non_finite(name: str, values) -> str | None:
    """'<name> is nan' / '<name> has 3 NaN and 1 inf of 4096 values', or None when all are finite."""
    a = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values
    finite = np.isfinite(a)
    if finite.all():
        return None
    if a.ndim == 0:
        return f"{name} is {float(a)}"
    n_nan = int(np.isnan(a).sum())
    return f"{name} has {n_nan} NaN and {int((~finite).sum()) - n_nan} inf of {a.size} values"


# the decision threshold from good images' scores: the 99.9th percentile of a normal distribution
# fitted robustly (median, 1.4826 x median absolute deviation), from ROBUST_MIN_IMAGES scores on
ROBUST_Z = 3.09
ROBUST_MIN_IMAGES = 10


def score_bound(top_t: int, image_size: int, pixel_max: float) -> float:
    """The largest sensible threshold: an image score (the sum of the top-T map pixels) above it needs
    every one of its top-T pixels above ``pixel_max``, the largest pixel score of good training images."""
    return min(top_t, image_size * image_size) * pixel_max


def good_score_threshold(scores, kind: str, bound: float) -> tuple[float, str]:
    """Decision threshold from image scores of good images, and a line saying how it was set.

    From ``ROBUST_MIN_IMAGES`` scores on: median + ``ROBUST_Z`` x 1.4826 x MAD (the 99.9th percentile
    of a normal fitted to them, so one unusual good image does not lift it above the defects); with
    fewer scores, or all of them equal, the largest score; either at most ``bound`` (:func:`score_bound`).

    Args:
        scores: (N,) finite image scores of good images; kind: what they are, for the line
            (e.g. "leave-one-out scores of the training images"); bound: the largest threshold.
    Raises:
        InputError when there is no score; NonFiniteScoreError for a NaN/inf score.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError(f"no {kind} to set the threshold from")
    problem = _non_finite(kind, values)
    if problem:
        raise NonFiniteScoreError(f"{problem}; no threshold set")
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    if values.size < ROBUST_MIN_IMAGES or spread == 0:
        threshold, rule = float(values.max()), f"max of {values.size} {kind}"
    else:
        threshold, rule = median + ROBUST_Z * spread, f"median + {ROBUST_Z} x 1.4826 MAD of {values.size} {kind}"
    if threshold > bound:  # a model file's check refuses a larger one (runtime.artifact.check_settings)
        return float(bound), f"top_t x the largest good pixel score (below {rule})"
    return threshold, rule


def verdict(score, threshold, anomaly_map=None, index: int = 0) -> bool:
    """``is_anomalous`` of one image: ``score > threshold``, failing closed.

    The one place a verdict is made (``Detector``, ``ArtifactDetector`` and the serving codec use
    it): a NaN never compares greater, so ``nan > threshold`` would pass a part as good.

    Args:
        score: the image score; threshold: the decision threshold; anomaly_map: the image's map
            (optional); index: the image's position in the input, named in the error.
    Raises:
        NonFiniteScoreError naming the image index and what was non-finite (score, threshold or map).
    """
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise NonFiniteScoreError(f"image {index}: threshold {threshold!r} is not a number; no verdict given "
                                  f"(a part is never passed as good on a non-finite number)") from None
    problems = [p for p in (_non_finite("threshold", threshold), _non_finite("score", score),
                            None if anomaly_map is None else _non_finite("anomaly map", anomaly_map)) if p]
    if problems:
        raise NonFiniteScoreError(f"image {index}: {'; '.join(problems)}; no verdict given (a part is never "
                                  f"passed as good on a non-finite number)")
    return bool(float(score) > threshold)


def predict_batched(score_batch: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]], images,
                    threshold: float, batch_size: int = 8, color: str = "RGB"):
    """The ``predict`` of both detectors: normalise ``images``, score them in chunks, build Predictions.

    Args:
        score_batch: list of (H, W, 3) uint8 RGB -> (scores (B,) float32, maps (B, S, S) float32).
        images: anything ``as_image_list`` takes.
        threshold: an image is anomalous when its score is above it.
    Returns:
        one ``Prediction`` (maps resized to the input) for a single image, else a list of them.
    Raises:
        NonFiniteScoreError (see :func:`verdict`) when a score, the threshold or a map is NaN/inf:
        such an image gets no ``Prediction`` rather than ``is_anomalous == False``.
    """
    items, single = as_image_list(images, color)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    results = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        scores, maps = score_batch(chunk)
        if len(scores) != len(chunk) or len(maps) != len(chunk):
            raise RuntimeError(f"score_batch returned {len(scores)} scores and {len(maps)} maps for "
                               f"{len(chunk)} images")
        for j, (s, m, im) in enumerate(zip(scores, maps, chunk)):
            is_anomalous = verdict(s, threshold, m, index=i + j)
            results.append(Prediction(float(s), resize_map(m, im.shape[:2]), is_anomalous))
    return results[0] if single else results
