"""Synthetic anomalies for training CPR's local metric (DRAEM-style) and for choosing the model.

A Perlin-noise mask selects a random, blob-shaped region of a normal training image; inside
it the image is blended with an "anomaly appearance" texture taken either from an external
texture folder (e.g. DTD) or derived from the training images themselves. Thin scratches
(:func:`synthesize_scratch`) are a second family, never used in training, so that the validation
split is not scored only on the defects the local metric was trained on.

NumPy + OpenCV only. All randomness comes from a ``numpy.random.Generator`` passed in, so
results are deterministic for a given seed.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

TEXTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be two positive ints, got {shape!r}")
    return h, w


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise.

    ``res`` is the number of lattice cells along (rows, cols). The noise is defined on a grid
    padded up to a multiple of ``res`` and cropped, so any ``shape`` works.

    Returns an (H, W) float32 array with values in [-1, 1].
    """
    h, w = _check_shape(shape)
    ry, rx = (int(r) for r in res)
    if ry < 1 or rx < 1:
        raise ValueError(f"res must be two positive ints, got {res!r}")
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # (ry+1, rx+1, 2)

    # Lattice coordinates of the first h rows / w cols of the padded (ry*cy, rx*cx) grid.
    ty = np.arange(h) / math.ceil(h / ry)
    tx = np.arange(w) / math.ceil(w / rx)
    iy = ty.astype(np.int64)[:, None]
    ix = tx.astype(np.int64)[None, :]
    fy = (ty - np.floor(ty))[:, None]
    fx = (tx - np.floor(tx))[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[iy + dy, ix + dx]  # (h, w, 2)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1.0 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1.0 - ux) + corner(1, 1) * ux
    noise = top * (1.0 - uy) + bottom * uy
    # Unit gradients bound 2-D Perlin noise by sqrt(1/2); rescale to [-1, 1].
    return (np.sqrt(2.0) * noise).astype(np.float32)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
    max_rotation: float = 90.0,
) -> np.ndarray:
    """Random blob-shaped mask from thresholded, rotated Perlin noise.

    The lattice resolution per axis is ``2**e`` with ``e`` drawn independently per axis from
    ``[min_scale_exp, max_scale_exp)`` (capped so a cell spans at least 2 pixels); the noise is
    rotated by a random angle in ``[-max_rotation, max_rotation]`` degrees (reflect border).

    Returns an (H, W) bool array: ``noise > threshold``.
    """
    h, w = _check_shape(shape)
    if not 0 <= min_scale_exp < max_scale_exp:
        raise ValueError(
            f"need 0 <= min_scale_exp < max_scale_exp, got {min_scale_exp}, {max_scale_exp}"
        )
    ey, ex = rng.integers(min_scale_exp, max_scale_exp, size=2)
    res = (min(2 ** int(ey), max(1, h // 2)), min(2 ** int(ex), max(1, w // 2)))
    noise = perlin_noise((h, w), res, rng)
    angle = rng.uniform(-max_rotation, max_rotation)
    rot = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    noise = cv2.warpAffine(noise, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return noise > threshold


def _check_image(image: np.ndarray, what: str) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8
            and image.ndim == 3 and image.shape[2] == 3):
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got {desc}")


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 (no-op when the size already matches)."""
    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    shrink = h < image.shape[0] and w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _random_rot90(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random multiple of 90 degrees for square arrays, 0 or 180 degrees otherwise (keeps shape)."""
    k = rng.integers(4) if image.shape[0] == image.shape[1] else 2 * rng.integers(2)
    return np.rot90(image, int(k))


def colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8 with random gamma, contrast, brightness, colour cast and
    occasional inversion."""
    x = image.astype(np.float32) / 255.0
    x = x ** np.float32(rng.uniform(0.5, 2.0))
    mean = x.mean()
    x = (x - mean) * np.float32(rng.uniform(0.6, 1.4)) + mean + np.float32(rng.uniform(-0.2, 0.2))
    x = x * rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    if rng.random() < 0.2:
        x = 1.0 - x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


class AnomalySource:
    """Where the anomaly appearance comes from.

    An external texture folder (e.g. DTD; searched recursively for png/jpg/jpeg/bmp/tif files,
    loaded lazily, at most ``cache_size`` kept in memory) when ``texture_dir`` is given; otherwise
    the training ``images`` themselves ((H, W, 3) uint8 RGB), cut into shuffled/rotated tiles or
    copied with a flip/rotation/offset.
    """

    def __init__(
        self,
        texture_dir: str | None = None,
        images: list[np.ndarray] | None = None,
        cache_size: int = 64,
    ):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._cache_size = cache_size
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._paths: list[Path] = []
        self._images: list[np.ndarray] = []
        if texture_dir is not None:
            root = Path(texture_dir)
            if not root.is_dir():
                raise FileNotFoundError(f"texture directory not found: {root}")
            self._paths = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXTURE_SUFFIXES
            )
            if not self._paths:
                raise ValueError(
                    f"texture directory {root} contains no image files "
                    f"({', '.join(sorted(TEXTURE_SUFFIXES))})"
                )
        elif images:
            for i, img in enumerate(images):
                _check_image(img, f"images[{i}]")
            self._images = list(images)
        else:
            raise ValueError("AnomalySource needs a texture_dir or a non-empty list of images")

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Random anomaly texture, colour-jittered. Returns an (H, W, 3) uint8 RGB array."""
        shape = _check_shape(shape)
        if self._paths:
            texture = self._texture_crop(self._load(self._paths[rng.integers(len(self._paths))]), shape, rng)
        else:
            image = _resize(self._images[rng.integers(len(self._images))], shape)
            if rng.random() < 0.5:
                texture = self._shuffled_tiles(image, rng)
            else:
                texture = self._structured_copy(image, rng)
        return colour_jitter(texture, rng)

    def _load(self, path: Path) -> np.ndarray:
        """Texture file -> (h, w, 3) uint8 RGB, through a bounded LRU cache."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read texture file {path} (corrupt or unsupported image)")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._cache[path] = rgb
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rgb

    @staticmethod
    def _texture_crop(texture: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Scale (aspect kept) so the texture covers ``shape``, then take a random (H, W) crop."""
        h, w = shape
        th, tw = texture.shape[:2]
        scale = max(h / th, w / tw)
        covered = _resize(texture, (max(h, round(th * scale)), max(w, round(tw * scale))))
        y = rng.integers(covered.shape[0] - h + 1)
        x = rng.integers(covered.shape[1] - w + 1)
        return covered[y:y + h, x:x + w]

    @staticmethod
    def _shuffled_tiles(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Cut into an n x n grid (n in 4..8) of equal tiles, shuffle and rotate them."""
        h, w = image.shape[:2]
        n = int(rng.integers(4, 9))
        th, tw = math.ceil(h / n), math.ceil(w / n)
        grid = _resize(image, (n * th, n * tw))
        tiles = grid.reshape(n, th, n, tw, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, th, tw, 3)
        tiles = np.stack([_random_rot90(t, rng) for t in tiles[rng.permutation(n * n)]])
        out = tiles.reshape(n, n, th, tw, 3).transpose(0, 2, 1, 3, 4).reshape(n * th, n * tw, 3)
        return np.ascontiguousarray(out[:h, :w])

    @staticmethod
    def _structured_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rotated, optionally mirrored and cyclically offset copy of the image."""
        out = _random_rot90(image, rng)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        shift = (int(rng.integers(out.shape[0])), int(rng.integers(out.shape[1])))
        return np.ascontiguousarray(np.roll(out, shift, axis=(0, 1)))


def _checked_foreground(image: np.ndarray, foreground: np.ndarray | None) -> np.ndarray | None:
    """Check the (H, W, 3) uint8 ``image``; the optional object mask as an (H, W) bool array (ValueError
    naming the shape received otherwise)."""
    _check_image(image, "image")
    if foreground is None:
        return None
    foreground = np.asarray(foreground, dtype=bool)
    if foreground.shape != image.shape[:2]:
        raise ValueError(f"foreground must have shape {image.shape[:2]}, got {foreground.shape}")
    return foreground


def synthesize_anomaly(
    image: np.ndarray,
    rng: np.random.Generator,
    source: AnomalySource,
    foreground: np.ndarray | None = None,
    min_area_fraction: float = 0.002,
    max_tries: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a Perlin-shaped synthetic anomaly into a normal image.

    ``image``: (H, W, 3) uint8 RGB. ``foreground``: optional (H, W) bool object mask; the anomaly
    is confined to it. Up to ``max_tries`` masks are drawn until one covers at least
    ``min_area_fraction`` of the image; otherwise an unchanged copy and an empty mask are returned.
    Inside the mask ``out = (1 - beta) * texture + beta * image`` with ``beta ~ U(0, 0.8)``;
    pixels outside the mask are exactly the input.

    Returns (anomalous image (H, W, 3) uint8, mask (H, W) bool).
    """
    foreground = _checked_foreground(image, foreground)
    h, w = image.shape[:2]
    empty = np.zeros((h, w), dtype=bool)
    min_pixels = max(1, math.ceil(min_area_fraction * h * w))
    if foreground is not None and foreground.sum() < min_pixels:
        return image.copy(), empty

    for _ in range(max_tries):
        mask = perlin_mask((h, w), rng)
        if foreground is not None:
            mask &= foreground
        if mask.sum() >= min_pixels:
            break
    else:
        return image.copy(), empty

    texture = source.sample((h, w), rng).astype(np.float32)
    beta = np.float32(rng.uniform(0.0, 0.8))
    patch = (1.0 - beta) * texture[mask] + beta * image[mask].astype(np.float32)
    out = image.copy()
    out[mask] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return out, mask


def synthesize_scratch(
    image: np.ndarray,
    rng: np.random.Generator,
    foreground: np.ndarray | None = None,
    min_area_fraction: float = 0.0005,
    max_tries: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a thin scratch (a random polyline, darker or brighter than the surface) into a normal image.

    ``image``: (H, W, 3) uint8 RGB. ``foreground``: optional (H, W) bool object mask the scratch is
    confined to. The polyline has 2-4 segments, a length of 15-50 % of the image side and a width of
    0.4-1.2 % of it (at least 1 pixel); inside it every channel is shifted by the same +-(40..110).
    Up to ``max_tries`` polylines are drawn until the part of one inside the foreground (when given)
    covers ``min_area_fraction`` of the image; otherwise an unchanged copy and an empty mask are returned.

    Returns (scratched image (H, W, 3) uint8, mask (H, W) bool).
    """
    foreground = _checked_foreground(image, foreground)
    h, w = image.shape[:2]
    side = min(h, w)
    min_pixels = max(1, math.ceil(min_area_fraction * h * w))
    for _ in range(max_tries):
        segments = int(rng.integers(2, 5))
        step = rng.uniform(0.15, 0.5) * side / segments
        points = [rng.uniform((0, 0), (w, h))]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(segments):
            heading += rng.uniform(-0.6, 0.6)
            points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
        mask = np.zeros((h, w), np.uint8)
        thickness = max(1, int(round(rng.uniform(0.004, 0.012) * side)))
        cv2.polylines(mask, [np.round(np.array(points)).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
        mask = mask.astype(bool)
        if foreground is not None:
            mask &= foreground
        if mask.sum() >= min_pixels:
            break
    else:
        return image.copy(), np.zeros((h, w), dtype=bool)
    shift = float(rng.choice((-1.0, 1.0)) * rng.uniform(40, 110))
    out = image.copy()
    out[mask] = np.clip(image[mask].astype(np.float32) + shift, 0, 255).astype(np.uint8)
    return out, mask
