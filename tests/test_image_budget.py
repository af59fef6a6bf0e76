"""The pixel budget of the image decoders: checked from the header, before anything is decoded."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from cpr_engine.data import imageio
from cpr_engine.data.imageio import (MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, ImageReadError, decode_image,
                                     read_image, read_mask, write_image)
from cpr_engine.errors import InputError
from cpr_engine.serve.codec import decode_image_bytes


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _big_png(w: int = 10000, h: int = 10000) -> bytes:
    """A valid 8-bit gray PNG of w x h zeros, a few KB (rows compressed in a stream, never all in memory)."""
    comp = zlib.compressobj(9)
    row = bytes(w + 1)  # filter byte 0 + w zero pixels
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _hdr_header(w: int, h: int) -> bytes:
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n" + f"-Y {h} +X {w}\n".encode()


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decode (Pillow load or OpenCV imdecode/imread) fails the test."""
    def boom(*a, **k):
        raise AssertionError("the image was decoded although its header is over the pixel budget")
    Image.init()  # import all Pillow plugins first (some decode a prototype image on import)
    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr(cv2, "imdecode", boom)
    monkeypatch.setattr(cv2, "imread", boom)


def test_default_budget_fits_8000x8000():
    assert MAX_IMAGE_PIXELS >= 8000 * 8000


def test_small_png_with_huge_size_refused_before_decoding(tmp_path, no_decoding):
    data = _big_png()
    assert len(data) < 100_000  # a few KB on disk ...
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    with pytest.raises(ImageReadError, match=r"bomb\.png.*10000 x 10000 = 100,000,000 pixels.*"
                                             r"64,000,000.*" + MAX_PIXELS_ENV + ".*max_pixels="):
        read_image(p)
    with pytest.raises(ImageReadError, match="10000 x 10000"):
        read_mask(p)


def test_pillow_own_limit_does_not_preempt_ours(tmp_path, monkeypatch, no_decoding):
    # Pillow's limit lower than ours: ours decides (no DecompressionBombError/Warning from Pillow).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    p = tmp_path / "bomb.png"
    p.write_bytes(_big_png(3000, 3000))
    with pytest.raises(ImageReadError, match=r"3000 x 3000 = 9,000,000 pixels.*budget of 1,000"):
        read_image(p, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


def test_pillow_own_limit_does_not_refuse_what_ours_allows(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # error above 200 pixels in Pillow
    p = tmp_path / "ok.png"
    write_image(p, np.full((30, 40, 3), 7, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert read_image(p).shape == (30, 40, 3)


def test_radiance_hdr_named_png_refused_by_fallback(tmp_path, no_decoding):
    p = tmp_path / "photo.png"
    p.write_bytes(_hdr_header(13400, 13400) + b"\x00" * 4096)
    with pytest.raises(ImageReadError, match=r"photo\.png.*13400 x 13400 = 179,560,000 pixels"):
        read_image(p)


def test_radiance_hdr_within_budget_still_decodes(tmp_path):
    a = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)
    ok, buf = cv2.imencode(".hdr", a)
    assert ok
    p = tmp_path / "small.hdr"
    p.write_bytes(buf.tobytes())
    assert imageio._header_size(buf.tobytes()) == (5, 6)
    with pytest.raises(ImageReadError, match=r"5 x 6 = 30 pixels"):
        read_image(p, max_pixels=29)
    assert read_image(p, max_pixels=30).shape == (6, 5, 3)  # within the budget: OpenCV decodes it


def test_fallback_refuses_unknown_size(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: called.append(1))
    p = tmp_path / "junk.png"
    p.write_bytes(b"not an image at all" * 10)
    with pytest.raises(ImageReadError, match=r"junk\.png.*cannot determine the image size from the header"):
        read_image(p)
    assert not called


@pytest.mark.parametrize("header,size", [
    (b"P5\n# comment\n640 480\n255\n", (640, 480)),
    (b"P6 7 9 255\n", (7, 9)),
    (b"PF\n320 200\n-1.0\n", (320, 200)),
    (b"P7\nWIDTH 11\nHEIGHT 13\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n", (11, 13)),
    (b"#?RGBE\n\n+X 30 +Y 20\n", (30, 20)),
    (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", None),  # no resolution line
    (b"GIF89a", None),
])
def test_header_size(header, size):
    assert imageio._header_size(header) == size


def test_image_within_budget_reads(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (20, 20, 3), np.uint8)
    p = tmp_path / "ok.png"
    write_image(p, a)
    np.testing.assert_array_equal(read_image(p), a)
    np.testing.assert_array_equal(read_image(p, max_pixels=400), a)  # exactly at the budget
    with pytest.raises(ImageReadError, match=r"20 x 20 = 400 pixels.*budget of 399 \(max_pixels=\)"):
        read_image(p, max_pixels=399)


def test_env_budget(tmp_path, monkeypatch, no_decoding):
    p = tmp_path / "ok.png"
    write_image(p, np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    with pytest.raises(ImageReadError, match=r"ok\.png.*20 x 20 = 400 pixels.*budget of 100 "
                                             r"\(environment variable " + MAX_PIXELS_ENV + r"\)"):
        read_image(p)


def test_env_budget_allows_and_kwarg_wins(tmp_path, monkeypatch):
    p = tmp_path / "ok.png"
    write_image(p, np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "400")
    assert read_image(p).shape == (20, 20, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    assert read_image(p, max_pixels=10_000).shape == (20, 20, 3)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5e6"])
def test_invalid_env_value(tmp_path, monkeypatch, value):
    p = tmp_path / "ok.png"
    write_image(p, np.zeros((4, 4, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(InputError, match=MAX_PIXELS_ENV):
        read_image(p)
    with pytest.raises(InputError, match=MAX_PIXELS_ENV):
        decode_image(p.read_bytes())


@pytest.mark.parametrize("value", [0, -1, 2.5, "100", True])
def test_invalid_max_pixels(tmp_path, value):
    p = tmp_path / "ok.png"
    write_image(p, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="max_pixels"):
        read_image(p, max_pixels=value)


def test_bytes_decoder_obeys_budget(monkeypatch, no_decoding):
    data = _big_png()
    with pytest.raises(ImageReadError, match=r"10000 x 10000 = 100,000,000 pixels"):
        decode_image(data)
    with pytest.raises(ImageReadError, match=r"^image_bytes: image too large: 10000 x 10000"):
        decode_image_bytes(data)  # the server's decoder
    with pytest.raises(ImageReadError, match=r"13400 x 13400"):
        decode_image_bytes(_hdr_header(13400, 13400) + b"\x00" * 64)


def test_bytes_decoder_budget_env_and_kwarg(monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    assert decode_image(data).shape == (20, 20, 3)
    with pytest.raises(ImageReadError, match=r"20 x 20 = 400 pixels"):
        decode_image(data, max_pixels=100)
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    with pytest.raises(ImageReadError, match=MAX_PIXELS_ENV):
        decode_image_bytes(data)


def test_decoded_shape_checked_again(monkeypatch):
    # defence in depth: a decoder returning more pixels than the header said is refused too
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: np.zeros((50, 50), np.uint8))
    with pytest.raises(ImageReadError, match=r"50 x 50 = 2,500 pixels"):
        decode_image(_hdr_header(10, 10) + bytes(400), max_pixels=1000)


@pytest.mark.parametrize("w,h", [(0, 5), (7, 0), (0, 0)])
def test_png_declaring_zero_pixels_is_refused_before_any_decoder(tmp_path, no_decoding, w, h):
    """A PNG whose header declares a zero side is refused from the header (no decoder runs, so libpng prints no
    warning lines beside the one-line refusal)."""
    path = tmp_path / "zero.png"
    path.write_bytes(_big_png(1, 1).replace(struct.pack(">II", 1, 1), struct.pack(">II", w, h), 1))
    with pytest.raises(ImageReadError, match=f"corrupt PNG: its header declares {w} x {h} pixels"):
        read_image(path)
