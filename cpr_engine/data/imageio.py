"""Strict image and mask I/O: every image comes out as ``(H, W, 3) uint8`` RGB, every mask as ``(H, W) bool``.

NumPy + Pillow + OpenCV only (no torch).

Decoding goes through Pillow with truncated-image tolerance forced off, so a PNG/JPEG cut short
raises instead of coming back half gray; PNG files must also end with an ``IEND`` chunk and their
image data must inflate to every row the header declares (a zlib stream that ends early but properly
passes Pillow, the rows left black), and JPEG files must have an end-of-image marker after their last
scan. 16-bit colour PNGs (which Pillow reduces to 8 bits by dropping the low byte) are re-decoded
with OpenCV after Pillow has checked them, so that all 16-bit data is scaled the same way:
``round(v / 257)``. Files Pillow cannot
identify fall back to OpenCV. EXIF orientation tags are ignored (pixels are returned as stored).

Pixel budget: every decoder checks ``width * height`` from the file's header *before* decoding
anything, against :data:`MAX_IMAGE_PIXELS` (overridable by the environment variable
``CPR_ENGINE_MAX_PIXELS`` or by ``max_pixels=``). Pillow's own decompression-bomb limit is switched
off for our calls (ours replaces it); the OpenCV fallback only decodes when the size could be read
from the header (Pillow's, or our parser for PNG/BMP/PNM/PAM/PFM/Radiance HDR) and is within the
budget, and every decoded array's shape is checked again.
"""
from __future__ import annotations

import io
import os
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import InputError
from .samples import list_image_files

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageReadError",
    "ImageNotFoundError",
    "read_image",
    "read_mask",
    "pil_pixels",
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


# Default pixel budget per image (width * height), checked from the header before decoding:
# 64 megapixels fits industrial cameras up to about 8000 x 8000 (e.g. 65 MP 9344 x 7000 does not:
# raise it). Decoded as RGB uint8 that is up to 192 MB per image, plus the decoder's working copies.
MAX_IMAGE_PIXELS = 64_000_000
# Environment variable that overrides MAX_IMAGE_PIXELS (a positive integer number of pixels).
MAX_PIXELS_ENV = "CPR_ENGINE_MAX_PIXELS"

_PIL_LOCK = threading.Lock()
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SIG = b"\xff\xd8\xff"


# --------------------------------------------------------------------------------------------------
# array conversion
# --------------------------------------------------------------------------------------------------
def to_rgb_uint8(array, *, path=None, max_pixels: int | None = None) -> np.ndarray:
    """Convert an image array to ``(H, W, 3) uint8`` RGB.

    Accepted shapes: ``(H, W)``, ``(H, W, 1)`` (gray, replicated), ``(H, W, 3)`` (RGB, unchanged
    channel order), ``(H, W, 4)`` (RGBA, alpha dropped). Accepted dtypes: ``uint8`` (as is),
    ``uint16`` (scaled by ``round(v / 257)``, so 65535 -> 255), ``bool`` (0/255) and floating
    point in ``[0, 1]`` (scaled by ``round(v * 255)``). NaN/inf, floats outside ``[0, 1]``, other
    integer dtypes, other channel counts or ndims, and more pixels than the pixel budget
    (``max_pixels``, as :func:`read_image` takes it) raise :class:`ImageReadError` (``path``, if given,
    is only used in the message).
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
    limit, source = _pixel_budget(max_pixels)
    if h * w > limit:  # before any conversion allocates (a broadcast view can claim terabytes)
        raise ImageReadError(path, f"image array too large: {w} x {h} = {h * w:,} pixels exceeds the pixel "
                                   f"budget of {limit:,} ({source}); raise it with the environment "
                                   f"variable {MAX_PIXELS_ENV} or the max_pixels= argument")
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

def _pixel_budget(max_pixels=None) -> tuple[int, str]:
    """The pixel budget for one decode and where it came from (for messages)."""
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
            raise InputError(f"max_pixels must be a positive integer number of pixels, got {max_pixels!r}")
        return int(max_pixels), "max_pixels="
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is not None and raw.strip():
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(f"environment variable {MAX_PIXELS_ENV}={raw!r} is not a positive integer "
                             f"number of pixels (e.g. {MAX_PIXELS_ENV}=100000000); unset it for the "
                             f"default of {MAX_IMAGE_PIXELS:,}")
        return value, f"environment variable {MAX_PIXELS_ENV}"
    return MAX_IMAGE_PIXELS, "default MAX_IMAGE_PIXELS"


def _check_budget(p, width: int, height: int, budget: tuple[int, str]) -> None:
    limit, source = budget
    n = int(width) * int(height)
    if n > limit:
        raise ImageReadError(
            p, f"image too large: {int(width)} x {int(height)} = {n:,} pixels exceeds the pixel budget "
               f"of {limit:,} ({source}); refusing to decode. To allow it, raise the budget with the "
               f"environment variable {MAX_PIXELS_ENV} or the max_pixels= argument")


def _pnm_tokens(data: bytes, start: int, count: int) -> list[bytes] | None:
    """``count`` whitespace-separated header tokens of a PNM/PFM file from ``start`` (``#`` comments skipped)."""
    out: list[bytes] = []
    i, n = start, min(len(data), 4096)
    while len(out) < count and i < n:
        c = data[i:i + 1]
        if c.isspace():
            i += 1
        elif c == b"#":
            j = data.find(b"\n", i, n)
            if j < 0:
                return None
            i = j + 1
        else:
            j = i
            while j < n and not data[j:j + 1].isspace() and data[j:j + 1] != b"#":
                j += 1
            out.append(data[i:j])
            i = j
    return out if len(out) == count else None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the header of a format OpenCV decodes, or None if unknown."""
    try:
        if data.startswith(_PNG_SIG) and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if data[:2] == b"BM" and len(data) >= 26:
            w = int.from_bytes(data[18:22], "little", signed=True)
            h = int.from_bytes(data[22:26], "little", signed=True)
            return abs(w), abs(h)
        if data.startswith((b"#?RADIANCE", b"#?RGBE")):
            head = data[:65536]
            end = head.find(b"\n\n")
            if end < 0:
                return None
            line = head[end + 2:].split(b"\n", 1)[0].split()
            # "-Y H +X W" (OpenCV reads only this) or other orientations: "[+-]Y|X N [+-]X|Y M"
            if len(line) == 4 and line[0][1:] in (b"X", b"Y") and line[2][1:] in (b"X", b"Y"):
                a, b = int(line[1]), int(line[3])
                return (b, a) if line[0][1:] == b"Y" else (a, b)
            return None
        if data[:1] == b"P" and data[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6", b"F", b"f"):
            tok = _pnm_tokens(data, 2, 2)
            return None if tok is None else (int(tok[0]), int(tok[1]))
        if data[:2] == b"P7":  # PAM: "WIDTH w" / "HEIGHT h" lines up to ENDHDR
            head = data[:4096]
            end = head.find(b"ENDHDR")
            fields = dict(ln.split(None, 1) for ln in head[:end].splitlines()[1:] if len(ln.split(None, 1)) == 2)
            if end >= 0 and b"WIDTH" in fields and b"HEIGHT" in fields:
                return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    except ValueError:
        return None
    return None

def _read_bytes(path) -> tuple[Path, bytes]:
    try:
        p = Path(os.fspath(path))
    except TypeError as e:
        raise ImageReadError(None, f"expected a file path, got {type(path).__name__}") from e
    if os.fspath(path) == "":
        raise ImageNotFoundError(None, "the image path is empty")
    if not p.exists():
        raise ImageNotFoundError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a directory, not an image file")
    if not p.is_file():  # reading a FIFO blocks, a device never ends
        raise ImageReadError(p, "not a regular file (a FIFO, device or socket)")
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
        if len(data) >= 24 and data[12:16] == b"IHDR" and (data[16:20] == b"\0\0\0\0" or data[20:24] == b"\0\0\0\0"):
            raise ImageReadError(p, f"corrupt PNG: its header declares {int.from_bytes(data[16:20], 'big')} x "
                                    f"{int.from_bytes(data[20:24], 'big')} pixels")
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


# Adam7 passes of an interlaced PNG: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def _png_raw_size(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines a PNG's image data inflates to (a filter byte per row)."""
    bits = _PNG_CHANNELS.get(colour_type, 0) * bit_depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total


def _check_png_image_data(p: Path | None, data: bytes) -> None:
    """Refuse a PNG whose compressed image data holds fewer rows than its header declares.

    A zlib stream that ends properly but early passes Pillow's CRC and truncation checks, and the
    missing rows come back black; this inflates the IDAT chunks once (output discarded) and compares
    the byte count with the header's. Call after the pixel budget check (the count is bounded by it).
    """
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    expected = _png_raw_size(width, height, data[24], data[25], data[28] == 1)
    inflater, got, pos = zlib.decompressobj(), 0, 8
    while pos + 8 <= len(data) and got < expected:
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            try:
                got += len(inflater.decompress(data[pos + 8:pos + 8 + length], expected - got))
            except zlib.error as e:
                raise ImageReadError(p, f"corrupt PNG: its image data does not inflate ({e})") from e
        pos += 12 + length
    if got < expected:
        raise ImageReadError(p, f"truncated PNG: its image data holds {got:,} of the {expected:,} bytes "
                                f"its {width} x {height} header declares")


def pil_pixels(im: Image.Image, p: Path | None = None) -> np.ndarray:
    """A PIL image's pixels as a decoded file gives them: (H, W) or (H, W, 3|4), uint8/uint16/float32
    (palettes expanded, 1-bit to 0/255); ``p`` names its file in errors."""
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


def _check_shape(p, a: np.ndarray | None, budget: tuple[int, str]) -> np.ndarray | None:
    """Defence in depth: the decoded array must also be within the budget."""
    if a is not None and a.ndim >= 2:
        _check_budget(p, a.shape[1], a.shape[0], budget)
    return a


def _cv2_decode(data: bytes, p=None, budget: tuple[int, str] | None = None,
                size: tuple[int, int] | None = None) -> np.ndarray | None:
    """OpenCV decode, only when the size is known (``size``: from Pillow's header, else our header
    parser) and within ``budget``; None if OpenCV cannot decode it or the size is unknown."""
    budget = budget or _pixel_budget()
    if size is None:
        size = _header_size(data)
        if size is None:
            return None  # cannot determine the image size from the header: refuse to decode
    _check_budget(p, size[0], size[1], budget)
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if a is None or a.size == 0:
        return None
    _check_shape(p, a, budget)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA)
    return a


def _no_size_note(data: bytes) -> str:
    return ("" if _header_size(data) is not None else
            "; the OpenCV fallback was not tried: cannot determine the image size from the header, "
            "refusing to decode")


def _decode(path, max_pixels=None) -> tuple[Path, np.ndarray]:
    """Decode a file into its raw array: (H, W) or (H, W, 3|4) RGB(A), dtype uint8/uint16/float32."""
    budget = _pixel_budget(max_pixels)
    p, data = _read_bytes(path)
    return p, _decode_data(p, data, budget)


def _decode_data(p: Path | None, data: bytes, budget: tuple[int, str] | None = None) -> np.ndarray:
    """Decode encoded bytes (``p``: their file, for messages, or None) into the raw array of ``_decode``.

    ``budget``: ``(max pixels, its source)`` from :func:`_pixel_budget` (default: environment/default)."""
    budget = budget or _pixel_budget()
    _check_structure(p, data)
    size = None  # (W, H) from Pillow's header, once known (and within the budget)
    try:
        with _PIL_LOCK:
            saved = ImageFile.LOAD_TRUNCATED_IMAGES
            saved_max = Image.MAX_IMAGE_PIXELS
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            Image.MAX_IMAGE_PIXELS = None  # ours (checked below, before any decoding) replaces Pillow's
            try:
                with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
                    fmt = im.format
                    _check_budget(p, im.size[0], im.size[1], budget)
                    size = im.size
                    if fmt == "PNG":
                        im.verify()  # chunk CRCs and structure
                        _check_png_image_data(p, data)
                        im = Image.open(io.BytesIO(data))
                        _check_budget(p, im.size[0], im.size[1], budget)
                    im.load()
                    _check_budget(p, im.size[0], im.size[1], budget)
                    arr = _check_shape(p, pil_pixels(im, p), budget)
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = saved
                Image.MAX_IMAGE_PIXELS = saved_max
    except UnidentifiedImageError:
        arr = _cv2_decode(data, p, budget)
        if arr is None:
            raise ImageReadError(p, f"not a recognised image format or corrupt file "
                                    f"({len(data)} bytes; accepted: PNG, JPEG, BMP, TIFF"
                                    f"{_no_size_note(data)})") from None
        return arr
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:  # only if Pillow's limit was re-set by another thread
        raise ImageReadError(p, f"image too large: {e} (pixel budget {budget[0]:,}, {budget[1]}; "
                                f"raise it with {MAX_PIXELS_ENV} or max_pixels=)") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        msg = str(e) or type(e).__name__
        if "truncat" in msg.lower() or isinstance(e, (SyntaxError, EOFError)):
            raise ImageReadError(p, f"truncated or corrupt file: {msg}") from e
        arr = _cv2_decode(data, p, budget, size)  # e.g. a TIFF compression Pillow lacks
        if arr is None:
            note = "" if size is not None else _no_size_note(data)
            raise ImageReadError(p, f"corrupt or unsupported image: {msg}{note}") from e
        return arr
    # 16-bit colour PNG: Pillow keeps only the high byte; decode the full data with OpenCV.
    if fmt == "PNG" and len(data) > 25 and data[24] == 16 and data[25] in (2, 6):
        full = _cv2_decode(data, p, budget, size)
        if full is not None and full.dtype == np.uint16 and full.shape[:2] == arr.shape[:2]:
            arr = full
    return arr


# --------------------------------------------------------------------------------------------------
# public readers / writers
# --------------------------------------------------------------------------------------------------
def read_image(path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale is replicated to 3 channels, alpha is dropped, palettes are expanded, 16-bit data is
    scaled with ``round(v / 257)``. Raises :class:`ImageNotFoundError` (a ``FileNotFoundError``) for
    a missing file and :class:`ImageReadError` for an unreadable, corrupt or truncated one, or one
    larger than the pixel budget (checked from the header, before decoding): ``max_pixels`` if given,
    else the environment variable ``CPR_ENGINE_MAX_PIXELS``, else :data:`MAX_IMAGE_PIXELS`. An
    invalid ``max_pixels`` or ``CPR_ENGINE_MAX_PIXELS`` raises :class:`~cpr_engine.errors.InputError`.
    """
    p, arr = _decode(path, max_pixels)
    return to_rgb_uint8(arr, path=p, max_pixels=max_pixels)


def decode_image(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, TIFF) -> ``(H, W, 3) uint8`` RGB, converted as :func:`read_image`
    converts files, under the same pixel budget. Raises :class:`ImageReadError` (no path) for empty,
    corrupt, truncated or too large data."""
    budget = _pixel_budget(max_pixels)
    if not data:
        raise ImageReadError(None, "empty (0 bytes)")
    return to_rgb_uint8(_decode_data(None, bytes(data), budget), max_pixels=max_pixels)


def read_mask(path, shape: tuple[int, int] | None = None, *, image_path=None,
              max_pixels: int | None = None) -> np.ndarray:
    """Read a ground-truth mask as ``(H, W) bool``: a pixel is defective where any colour channel > 0.

    ``path`` may be a folder of mask images (MVTec LOCO: one per defect region): the mask is their
    union. ``shape`` is the ``(H, W)`` the mask must have (that of its image); a mismatch raises
    :class:`ImageReadError` giving both sizes, the mask path and ``image_path`` when passed. The pixel
    budget (``max_pixels``) is that of :func:`read_image`.
    """
    if Path(os.fspath(path)).is_dir():
        files = list_image_files(Path(os.fspath(path)), "mask folder", allow_empty=True)
        if not files:
            raise ImageReadError(path, "mask folder holds no mask images")
        masks = [read_mask(f, shape, image_path=image_path, max_pixels=max_pixels) for f in files]
        if shape is None and len({m.shape for m in masks}) > 1:
            raise ImageReadError(path, f"the masks of this folder differ in size: {sorted({m.shape for m in masks})}")
        return np.logical_or.reduce(masks)
    p, arr = _decode(path, max_pixels)
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
