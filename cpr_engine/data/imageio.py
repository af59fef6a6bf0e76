"""Strict image and mask I/O: every image comes out as ``(H, W, 3) uint8`` RGB, every mask as ``(H, W) bool``.

NumPy + Pillow + OpenCV only (no torch).

Decoding goes through Pillow with truncated-image tolerance forced off, so a PNG/JPEG cut short
raises instead of coming back half gray; PNG files must also end with an ``IEND`` chunk and JPEG
files must have an end-of-image marker after their last scan. 16-bit colour PNGs (which Pillow
reduces to 8 bits by dropping the low byte) are re-decoded with OpenCV after Pillow has checked
them, so that all 16-bit data is scaled the same way: ``round(v / 257)``. Files Pillow cannot
identify fall back to OpenCV. EXIF orientation tags are ignored (pixels are returned as stored).
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import InputError

__all__ = [
    "ImageReadError",
    "ImageNotFoundError",
    "read_image",
    "read_mask",
    "to_rgb_uint8",
    "write_image",
    "write_mask",
]


class ImageReadError(InputError):
    """An image or mask could not be read or converted; the message names the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(reason if path is None else f"cannot read image {self.path!r}: {reason}")


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """The image file does not exist (catchable as both ``ImageReadError`` and ``FileNotFoundError``)."""


_PIL_LOCK = threading.Lock()
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SIG = b"\xff\xd8\xff"


# --------------------------------------------------------------------------------------------------
# array conversion
# --------------------------------------------------------------------------------------------------
def to_rgb_uint8(array, *, path=None) -> np.ndarray:
    """Convert an image array to ``(H, W, 3) uint8`` RGB.

    Accepted shapes: ``(H, W)``, ``(H, W, 1)`` (gray, replicated), ``(H, W, 3)`` (RGB, unchanged
    channel order), ``(H, W, 4)`` (RGBA, alpha dropped). Accepted dtypes: ``uint8`` (as is),
    ``uint16`` (scaled by ``round(v / 257)``, so 65535 -> 255), ``bool`` (0/255) and floating
    point in ``[0, 1]`` (scaled by ``round(v * 255)``). NaN/inf, floats outside ``[0, 1]``, other
    integer dtypes, other channel counts or ndims raise :class:`ImageReadError`
    (``path``, if given, is only used in the message).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim != 3:
        raise ImageReadError(path, f"expected an image array of shape (H, W) or (H, W, C), got "
                                   f"ndim={a.ndim} shape={a.shape}")
    h, w, c = a.shape
    if h == 0 or w == 0:
        raise ImageReadError(path, f"empty image array of shape {a.shape}")
    if c not in (1, 3, 4):
        raise ImageReadError(path, f"unsupported channel count {c} in array of shape {a.shape} "
                                   f"(expected 1 gray, 3 RGB or 4 RGBA)")
    if c == 4:
        a = a[:, :, :3]

    dt = a.dtype
    if dt == np.uint8:
        out = a
    elif dt == np.bool_:
        out = a.astype(np.uint8) * np.uint8(255)
    elif dt == np.uint16:
        out = ((a.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), half up
    elif np.issubdtype(dt, np.floating):
        f = a.astype(np.float64, copy=False)
        finite = np.isfinite(f)
        if not finite.all():
            n_nan = int(np.isnan(f).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise ImageReadError(path, f"float image contains non-finite values "
                                       f"({n_nan} NaN, {n_inf} inf) in array of shape {a.shape}")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(path, f"float image values must lie in [0, 1], got range "
                                       f"[{lo:.6g}, {hi:.6g}]")
        out = np.floor(f * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageReadError(path, f"unsupported dtype {dt} (expected uint8, uint16, bool or "
                                   f"float in [0, 1])")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------
def _read_bytes(path) -> tuple[Path, bytes]:
    try:
        p = Path(os.fspath(path))
    except TypeError as e:
        raise ImageReadError(None, f"expected a file path, got {type(path).__name__}") from e
    if not p.exists():
        raise ImageNotFoundError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a directory, not an image file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(p, f"file could not be opened ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(p, "file is empty (0 bytes)")
    return p, data


def _check_structure(p: Path, data: bytes) -> None:
    """Cheap end-of-file checks that catch files cut short, whatever Pillow's settings are."""
    if data.startswith(_PNG_SIG):
        # The last chunk must be IEND (some writers append junk after it): require an IEND tag
        # after the last image-data chunk.
        iend = data.rfind(b"IEND")
        if iend < 0 or iend < data.rfind(b"IDAT"):
            raise ImageReadError(p, f"truncated or corrupt PNG: no IEND chunk at the end of the file "
                                    f"({len(data)} bytes)")
    elif data.startswith(_JPEG_SIG):
        # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an
        # end-of-image marker (FFD9) after the last start-of-scan (FFDA) means the scan is complete.
        sos = data.rfind(b"\xff\xda")
        if sos < 0:
            raise ImageReadError(p, "corrupt JPEG: no start-of-scan marker")
        if data.find(b"\xff\xd9", sos + 2) < 0:
            raise ImageReadError(p, f"truncated JPEG: no end-of-image marker after the last scan "
                                    f"({len(data)} bytes)")


def _pil_to_array(im: Image.Image, p: Path) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(im)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ImageReadError(p, f"32-bit integer image with values in [{int(a.min())}, "
                                    f"{int(a.max())}] cannot be mapped to 8 bits (expected 0..65535)")
        return a.astype(np.uint16)
    if mode == "F":
        return np.asarray(im).astype(np.float32)
    if mode == "RGBa":
        return np.asarray(im.convert("RGBA"))
    try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return np.asarray(im.convert("RGB"))
    except Exception as e:  # pragma: no cover - exotic modes
        raise ImageReadError(p, f"unsupported image mode {mode!r}: {e}") from e


def _cv2_decode(data: bytes) -> np.ndarray | None:
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if a is None or a.size == 0:
        return None
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA)
    return a


def _decode(path) -> tuple[Path, np.ndarray]:
    """Decode a file into its raw array: (H, W) or (H, W, 3|4) RGB(A), dtype uint8/uint16/float32."""
    p, data = _read_bytes(path)
    return p, _decode_data(p, data)


def _decode_data(p: Path | None, data: bytes) -> np.ndarray:
    """Decode encoded bytes (``p``: their file, for messages, or None) into the raw array of ``_decode``."""
    _check_structure(p, data)
    try:
        with _PIL_LOCK:
            saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                with Image.open(io.BytesIO(data)) as im:
                    fmt = im.format
                    if fmt == "PNG":
                        im.verify()  # chunk CRCs and structure
                        im = Image.open(io.BytesIO(data))
                    im.load()
                    arr = _pil_to_array(im, p)
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = saved
    except UnidentifiedImageError:
        arr = _cv2_decode(data)
        if arr is None:
            raise ImageReadError(p, f"not a recognised image format or corrupt file "
                                    f"({len(data)} bytes; accepted: PNG, JPEG, BMP, TIFF)") from None
        return arr
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(p, f"image too large: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        msg = str(e) or type(e).__name__
        if "truncat" in msg.lower() or isinstance(e, (SyntaxError, EOFError)):
            raise ImageReadError(p, f"truncated or corrupt file: {msg}") from e
        arr = _cv2_decode(data)  # e.g. a TIFF compression Pillow lacks
        if arr is None:
            raise ImageReadError(p, f"corrupt or unsupported image: {msg}") from e
        return arr
    # 16-bit colour PNG: Pillow keeps only the high byte; decode the full data with OpenCV.
    if fmt == "PNG" and len(data) > 25 and data[24] == 16 and data[25] in (2, 6):
        full = _cv2_decode(data)
        if full is not None and full.dtype == np.uint16 and full.shape[:2] == arr.shape[:2]:
            arr = full
    return arr


# --------------------------------------------------------------------------------------------------
# public readers / writers
# --------------------------------------------------------------------------------------------------
def read_image(path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale is replicated to 3 channels, alpha is dropped, palettes are expanded, 16-bit data is
    scaled with ``round(v / 257)``. Raises :class:`ImageNotFoundError` (a ``FileNotFoundError``) for
    a missing file and :class:`ImageReadError` for an unreadable, corrupt or truncated one.
    """
    p, arr = _decode(path)
    return to_rgb_uint8(arr, path=p)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, TIFF) -> ``(H, W, 3) uint8`` RGB, converted as :func:`read_image`
    converts files. Raises :class:`ImageReadError` (no path) for empty, corrupt or truncated data."""
    if not data:
        raise ImageReadError(None, "empty (0 bytes)")
    return to_rgb_uint8(_decode_data(None, bytes(data)))


def read_mask(path, shape: tuple[int, int] | None = None, *, image_path=None) -> np.ndarray:
    """Read a ground-truth mask as ``(H, W) bool``: a pixel is defective where any colour channel > 0.

    ``shape`` is the ``(H, W)`` the mask must have (that of its image); a mismatch raises
    :class:`ImageReadError` giving both sizes, the mask path and ``image_path`` when passed.
    """
    p, arr = _decode(path)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.ndim != 2:
        raise ImageReadError(p, f"unexpected mask shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ImageReadError(p, "mask contains NaN/inf values")
    mask = arr > 0
    if shape is not None:
        want = tuple(int(s) for s in tuple(shape)[:2])
        if mask.shape != want:
            img = f" of image {os.fspath(image_path)!r}" if image_path is not None else ""
            raise ImageReadError(
                p, f"mask size {mask.shape[1]}x{mask.shape[0]} (HxW {mask.shape}) differs from the "
                   f"size {want[1]}x{want[0]} (HxW {want}){img}")
    return mask


_ENCODE_PARAMS = {
    ".png": [cv2.IMWRITE_PNG_COMPRESSION, 1],
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".bmp": [],
    ".tif": [],
    ".tiff": [],
}


def _encode_and_write(path, arr: np.ndarray) -> None:
    p = Path(os.fspath(path))
    ext = p.suffix.lower()
    if ext not in _ENCODE_PARAMS:
        raise ValueError(f"cannot write {str(p)!r}: unsupported extension {p.suffix!r} "
                         f"(use one of {', '.join(_ENCODE_PARAMS)})")
    ok, buf = cv2.imencode(ext, arr, _ENCODE_PARAMS[ext])
    if not ok:
        raise OSError(f"cannot write {str(p)!r}: OpenCV failed to encode the image as {ext}")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_image(path, rgb_uint8) -> None:
    """Write an ``(H, W, 3) uint8`` RGB (or ``(H, W) uint8`` gray) image; format from the extension
    (``.png``, ``.jpg``/``.jpeg`` at quality 95, ``.bmp``, ``.tif``/``.tiff``). Parent folders are
    created; the file is written atomically (temp file + rename). PNG output is deterministic.
    """
    a = np.asarray(rgb_uint8)
    if a.dtype != np.uint8:
        raise ValueError(f"cannot write {os.fspath(path)!r}: expected uint8 pixels, got {a.dtype} "
                         f"(convert with to_rgb_uint8 first)")
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)
    elif a.ndim != 2:
        raise ValueError(f"cannot write {os.fspath(path)!r}: expected shape (H, W, 3) RGB or (H, W) "
                         f"gray, got {a.shape}")
    _encode_and_write(path, np.ascontiguousarray(a))


def write_mask(path, mask) -> None:
    """Write a boolean (or 0/nonzero) ``(H, W)`` mask as a single-channel 0/255 image (use ``.png``)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"cannot write mask {os.fspath(path)!r}: expected shape (H, W), got {m.shape}")
    _encode_and_write(path, np.where(m > 0, 255, 0).astype(np.uint8))
