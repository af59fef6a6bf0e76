"""Tests for cpr_engine.data: strict image I/O, the dataset layouts and the demo builder."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from cpr_engine.data import (DEMO_CATEGORIES, TEXTURE_CATEGORIES, ImageNotFoundError, ImageReadError,
                             Sample, build_demo, detect_dataset, list_categories, load_split,
                             read_image, read_mask, to_rgb_uint8, write_image, write_mask)
from tests.helpers.cases import made_dir

ROOT = Path(__file__).resolve().parents[1]


def esc(p) -> str:
    return re.escape(str(p))


def rgb_pattern(h=6, w=5) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 40 + 10, y * 30 + 5, (x + y) * 17], axis=2).astype(np.uint8)


# ==================================================================================================
# image reading: conversions
# ==================================================================================================
def test_read_gray_png(tmp_path):
    g = (np.arange(30).reshape(5, 6) * 8).astype(np.uint8)
    p = tmp_path / "gray.png"
    Image.fromarray(g, mode="L").save(p)
    out = read_image(p)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_read_rgb_png_keeps_channel_order(tmp_path):
    a = rgb_pattern()
    p = tmp_path / "rgb.png"
    Image.fromarray(a, mode="RGB").save(p)
    np.testing.assert_array_equal(read_image(p), a)
    np.testing.assert_array_equal(read_image(str(p)), a)  # str paths too


def test_read_rgba_png_drops_alpha(tmp_path):
    a = rgb_pattern()
    alpha = np.linspace(0, 255, a.shape[0] * a.shape[1]).reshape(a.shape[:2]).astype(np.uint8)
    p = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([a, alpha]), mode="RGBA").save(p)
    out = read_image(p)
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, a)  # colour unchanged, not premultiplied, alpha gone


def test_read_gray_alpha_png(tmp_path):
    g = np.array([[0, 100], [200, 255]], np.uint8)
    p = tmp_path / "la.png"
    Image.fromarray(np.dstack([g, np.full_like(g, 7)]), mode="LA").save(p)
    out = read_image(p)
    np.testing.assert_array_equal(out, np.repeat(g[:, :, None], 3, axis=2))


def test_read_16bit_gray_png_scaled(tmp_path):
    v = np.array([[0, 65535, 128 * 257], [1000, 2770, 129]], np.uint16)
    p = tmp_path / "g16.png"
    assert cv2.imwrite(str(p), v)
    assert Image.open(p).mode.startswith("I")  # really a 16-bit file
    out = read_image(p)
    expected = np.array([[0, 255, 128], [4, 11, 1]], np.uint8)  # round(v / 257)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 2], expected)


def test_read_16bit_colour_png_uses_full_precision(tmp_path):
    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[0, 0] = (65535, 0, 257 * 100)
    rgb16[0, 1] = (2770, 300, 128)  # round(2770/257)=11 while its high byte is 10
    rgb16[1, 0] = (257 * 3, 257 * 200, 257 * 77)
    p = tmp_path / "c16.png"
    assert cv2.imwrite(str(p), rgb16[:, :, ::-1])  # OpenCV writes BGR
    out = read_image(p)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 100])
    np.testing.assert_array_equal(out[0, 1], [11, 1, 0])
    np.testing.assert_array_equal(out[1, 0], [3, 200, 77])


def test_read_palette_png(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    palette = [255, 0, 0, 0, 128, 0, 10, 20, 250] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    p = tmp_path / "pal.png"
    im.save(p)
    assert Image.open(p).mode == "P"
    out = read_image(p)
    lut = np.array(palette[:9], np.uint8).reshape(3, 3)
    np.testing.assert_array_equal(out, lut[idx])


def test_read_jpeg(tmp_path):
    a = np.zeros((16, 16, 3), np.uint8)
    a[:, :8] = (200, 40, 30)
    a[:, 8:] = (20, 90, 210)
    p = tmp_path / "img.JPG"  # upper-case extension
    Image.fromarray(a).save(p, format="JPEG", quality=95)
    out = read_image(p)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # away from the colour edge the JPEG is close to the original, in RGB order
    assert np.abs(out[:, :5].astype(int) - (200, 40, 30)).max() <= 8
    assert np.abs(out[:, 11:].astype(int) - (20, 90, 210)).max() <= 8


@pytest.mark.parametrize("ext", [".bmp", ".tif", ".tiff"])
def test_read_bmp_and_tiff(tmp_path, ext):
    a = rgb_pattern()
    p = tmp_path / f"img{ext}"
    Image.fromarray(a).save(p)
    np.testing.assert_array_equal(read_image(p), a)


# ==================================================================================================
# image reading: errors
# ==================================================================================================
def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match=esc(p) + ".*file not found"):
        read_image(p)
    with pytest.raises(FileNotFoundError, match=esc(p)):  # also a FileNotFoundError
        read_image(p)
    with pytest.raises(ImageNotFoundError):
        read_mask(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "random.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=esc(p) + ".*(not a recognised image format|corrupt)"):
        read_image(p)


def test_png_signature_with_garbage(tmp_path):
    p = tmp_path / "garbage.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2 + b"IEND")
    with pytest.raises(ImageReadError, match=esc(p)):
        read_image(p)


def test_empty_file_and_directory(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match=esc(p) + ".*empty"):
        read_image(p)
    with pytest.raises(ImageReadError, match=esc(tmp_path) + ".*directory"):
        read_image(tmp_path)


def _noise(h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("lenient_pillow", [False, True])
def test_truncated_files_raise(tmp_path, monkeypatch, ext, lenient_pillow):
    # Even with Pillow told to accept truncated images, a half file must not load as half gray.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient_pillow)
    p = tmp_path / f"cut{ext}"
    write_image(p, _noise())
    data = p.read_bytes()
    read_image(p)  # the complete file is fine
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=esc(p) + ".*truncated"):
        read_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient_pillow  # setting restored


def test_truncated_png_caught_by_pillow_as_well(tmp_path):
    # damaged image data with the IEND chunk intact: Pillow's CRC/zlib checks must fire
    p = tmp_path / "cut.png"
    write_image(p, _noise(seed=1))
    data = p.read_bytes()
    p.write_bytes(data[:-40] + data[-12:])  # damage the last IDAT bytes but keep IEND
    with pytest.raises(ImageReadError, match=esc(p)):
        read_image(p)


def _png(width, height, bit_depth, colour_type, scanlines: bytes, interlaced=False, palette=None) -> bytes:
    """A PNG file around already filtered scanlines (CRCs correct, one IDAT chunk)."""
    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, colour_type, 0, 0, interlaced])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + (chunk(b"PLTE", palette) if palette else b"")
            + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b""))


def _adam7_scanlines(rgb: np.ndarray) -> bytes:
    """Scanlines of an 8-bit RGB image in Adam7 order, filter type 0."""
    out = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            out += b"".join(b"\0" + row.tobytes() for row in sub)
    return out


@pytest.mark.parametrize("height, width", [(7, 13), (1, 1), (9, 17)])
def test_interlaced_png_reads_whole(tmp_path, height, width):
    # the raw size an interlaced PNG must inflate to is the sum over the seven passes
    rgb = _noise(height, width, seed=height)
    p = tmp_path / "adam7.png"
    p.write_bytes(_png(width, height, 8, 2, _adam7_scanlines(rgb), interlaced=True))
    np.testing.assert_array_equal(read_image(p), rgb)
    p.write_bytes(_png(width, height, 8, 2, _adam7_scanlines(rgb)[:-1], interlaced=True))
    with pytest.raises(ImageReadError, match=esc(p) + ".*truncated PNG"):
        read_image(p)


@pytest.mark.parametrize("bit_depth, colour_type, width", [(8, 2, 31), (16, 2, 5), (1, 0, 13), (4, 3, 7),
                                                           (8, 4, 3), (16, 6, 9), (2, 0, 11)])
def test_png_with_rows_missing_from_a_complete_stream(tmp_path, bit_depth, colour_type, width):
    # A zlib stream that ends properly after half the rows passes Pillow's checks (the rest came
    # back black); the image data must hold every row the header declares.
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = 1 + (width * channels * bit_depth + 7) // 8
    height = 6
    rows = np.random.default_rng(width).integers(0, 256, (height, row), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none"
    if colour_type == 3:  # palette indices must exist: 16 entries for 4-bit indices
        palette = bytes(range(48))
    else:
        palette = None
    p = tmp_path / "rows.png"
    p.write_bytes(_png(width, height, bit_depth, colour_type, rows.tobytes(), palette=palette))
    assert read_image(p).shape == (height, width, 3)  # every row present: read
    p.write_bytes(_png(width, height, bit_depth, colour_type, rows[: height // 2].tobytes(), palette=palette))
    with pytest.raises(ImageReadError, match=esc(p) + f".*truncated PNG: its image data holds {3 * row:,} of the "
                                                      f"{height * row:,} bytes"):
        read_image(p)


def test_truncated_bmp(tmp_path):
    p = tmp_path / "cut.bmp"
    write_image(p, _noise())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=esc(p)):
        read_image(p)


# ==================================================================================================
# to_rgb_uint8
# ==================================================================================================
def test_to_rgb_uint8_conversions():
    g = np.array([[0, 10], [200, 255]], np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(g), np.repeat(g[:, :, None], 3, 2))
    np.testing.assert_array_equal(to_rgb_uint8(g[:, :, None]), np.repeat(g[:, :, None], 3, 2))
    rgba = np.dstack([rgb_pattern(2, 2), np.zeros((2, 2), np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb_pattern(2, 2))
    f = np.array([[0.0, 0.5], [1.0, 0.2]], np.float32)
    np.testing.assert_array_equal(to_rgb_uint8(f)[:, :, 1], [[0, 128], [255, 51]])
    u16 = np.array([[0, 65535], [257, 32767]], np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(u16)[:, :, 0], [[0, 255], [1, 127]])
    b = np.array([[True, False]])
    np.testing.assert_array_equal(to_rgb_uint8(b)[:, :, 2], [[255, 0]])
    out = to_rgb_uint8(rgb_pattern())
    assert out.dtype == np.uint8 and out.flags.c_contiguous


@pytest.mark.parametrize("shape,match", [
    ((4, 4, 2), "channel count 2"),
    ((4, 4, 5), "channel count 5"),
    ((4,), "ndim=1"),
    ((2, 4, 4, 3), "ndim=4"),
    ((0, 4, 3), "empty"),
])
def test_to_rgb_uint8_bad_shapes(shape, match):
    with pytest.raises(ImageReadError, match=match):
        to_rgb_uint8(np.zeros(shape, np.uint8))


def test_to_rgb_uint8_bad_values():
    a = np.full((3, 3, 3), 0.5, np.float32)
    a[1, 1, 1] = np.nan
    with pytest.raises(ImageReadError, match=r"non-finite.*1 NaN"):
        to_rgb_uint8(a)
    a[1, 1, 1] = np.inf
    with pytest.raises(ImageReadError, match=r"non-finite.*1 inf"):
        to_rgb_uint8(a)
    with pytest.raises(ImageReadError, match=r"\[0, 1\].*1\.5"):
        to_rgb_uint8(np.full((2, 2), 1.5))
    with pytest.raises(ImageReadError, match="unsupported dtype int64"):
        to_rgb_uint8(np.zeros((2, 2), np.int64))
    with pytest.raises(ImageReadError, match=r"'/some/where\.png'.*channel count 2"):
        to_rgb_uint8(np.zeros((2, 2, 2), np.uint8), path="/some/where.png")


# ==================================================================================================
# masks and writing
# ==================================================================================================
def test_read_mask_gray_rgb_and_16bit(tmp_path):
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 2:4] = 255
    m[0, 0] = 1  # >0 counts as defect
    p = tmp_path / "m.png"
    Image.fromarray(m).save(p)
    out = read_mask(p)
    assert out.dtype == bool and out.shape == (4, 5)
    np.testing.assert_array_equal(out, m > 0)
    assert read_mask(p, shape=(4, 5)).sum() == 5

    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[2, 3, 1] = 80
    Image.fromarray(rgb).save(tmp_path / "rgbm.png")
    assert np.argwhere(read_mask(tmp_path / "rgbm.png")).tolist() == [[2, 3]]

    m16 = np.zeros((3, 3), np.uint16)
    m16[1, 1] = 1  # would round to 0 as an 8-bit image, must still be defect
    cv2.imwrite(str(tmp_path / "m16.png"), m16)
    assert read_mask(tmp_path / "m16.png").sum() == 1


def test_read_mask_size_mismatch(tmp_path):
    p = tmp_path / "m.png"
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(p)
    img = tmp_path / "img.png"
    with pytest.raises(ImageReadError, match=esc(p) + r".*4x3.*\(3, 4\).*6x5.*\(5, 6\).*" + esc(img)):
        read_mask(p, shape=(5, 6), image_path=img)
    with pytest.raises(ValueError, match=r"mask size 4x3"):
        read_mask(p, (5, 6))


def test_write_image_roundtrip(tmp_path):
    a = rgb_pattern(7, 9)
    write_image(tmp_path / "sub" / "a.png", a)  # parent created
    np.testing.assert_array_equal(read_image(tmp_path / "sub" / "a.png"), a)
    write_image(tmp_path / "a.jpg", np.full((8, 8, 3), (10, 200, 90), np.uint8))
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - (10, 200, 90)).max() <= 3
    with open(tmp_path / "a.jpg", "rb") as fh:
        assert fh.read(3) == b"\xff\xd8\xff"
    write_mask(tmp_path / "m.png", np.eye(3, dtype=bool))
    raw = np.asarray(Image.open(tmp_path / "m.png"))
    assert raw.ndim == 2 and set(np.unique(raw)) == {0, 255}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_write_image_errors(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        write_image(tmp_path / "f.png", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="unsupported extension '.gif'"):
        write_image(tmp_path / "f.gif", np.zeros((2, 2, 3), np.uint8))


# ==================================================================================================
# dataset layouts
# ==================================================================================================
def put(path: Path, value: int = 100, size=(8, 8)) -> Path:
    """A tiny valid image (or 0/255 mask) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        write_image(path, np.full((*size, 3), value, np.uint8))
    else:
        Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def names(samples):
    return [Path(s.image_path).name for s in samples]


@pytest.fixture
def mvtec_root(tmp_path):
    r = tmp_path / "mvtec"
    for n in ("000", "010", "002", "001"):
        put(r / "bottle" / "train" / "good" / f"{n}.png")
    put(r / "bottle" / "train" / "good" / "003.PNG")
    (r / "bottle" / "train" / "good" / "notes.txt").write_text("not an image")
    put(r / "bottle" / "train" / "good" / ".hidden.png")
    put(r / "bottle" / "test" / "good" / "000.png")
    for d, stems in {"contamination": ["000"], "broken_large": ["001", "000"]}.items():
        for s in stems:
            put(r / "bottle" / "test" / d / f"{s}.png")
            put(r / "bottle" / "ground_truth" / d / f"{s}_mask.png", 255)
    put(r / "cable" / "train" / "good" / "000.png")
    put(r / "cable" / "test" / "good" / "000.png")
    (r / "cable" / "ground_truth").mkdir()
    (r / "license.txt").write_text("x")
    return r


def test_mvtec_layout(mvtec_root):
    r = mvtec_root
    assert detect_dataset(r) == "mvtec"
    assert list_categories(r, "mvtec") == ["bottle", "cable"]
    train = load_split(r, "mvtec", "bottle", "train")
    assert names(train) == ["000.png", "001.png", "002.png", "003.PNG", "010.png"]
    assert all(s.label == 0 and s.mask_path is None and s.defect_type == "good"
               and s.category == "bottle" and os.path.isabs(s.image_path) for s in train)
    test = load_split(r, "mvtec", "bottle", "test")
    assert [(s.defect_type, Path(s.image_path).name, s.label) for s in test] == [
        ("good", "000.png", 0),
        ("broken_large", "000.png", 1), ("broken_large", "001.png", 1),
        ("contamination", "000.png", 1)]
    for s in test[1:]:
        assert Path(s.mask_path) == r / "bottle" / "ground_truth" / s.defect_type / (
            Path(s.image_path).stem + "_mask.png")
        assert read_mask(s.mask_path, read_image(s.image_path).shape[:2]).all()
    assert load_split(r, "mvtec", "bottle", "test") == test  # deterministic
    assert isinstance(test[0], Sample)


def test_mvtec_errors(mvtec_root, tmp_path):
    r = mvtec_root
    missing = r / "bottle" / "ground_truth" / "contamination" / "000_mask.png"
    missing.unlink()
    img = r / "bottle" / "test" / "contamination" / "000.png"
    with pytest.raises(FileNotFoundError, match=esc(img) + ".*" + esc(missing)):
        load_split(r, "mvtec", "bottle", "test")
    with pytest.raises(ValueError, match="unknown MVTec AD category 'nope'.*bottle"):
        load_split(r, "mvtec", "nope", "train")
    with pytest.raises(ValueError, match="split must be"):
        load_split(r, "mvtec", "bottle", "val")
    with pytest.raises(ValueError, match="unknown dataset 'mvtex'"):
        load_split(r, "mvtex", "bottle", "train")
    for f in (r / "cable" / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=esc(r / "cable" / "train" / "good") + ".*no images"):
        load_split(r, "mvtec", "cable", "train")

    shutil.rmtree(r / "cable" / "test")
    with pytest.raises(FileNotFoundError, match=esc(r / "cable" / "test") + ".*does not exist"):
        load_split(r, "mvtec", "cable", "test")
    with pytest.raises(FileNotFoundError, match=esc(tmp_path / "absent")):
        load_split(tmp_path / "absent", "mvtec", "bottle", "train")
    with pytest.raises(FileNotFoundError, match=esc(tmp_path / "absent")):
        list_categories(tmp_path / "absent", "mvtec")


@pytest.fixture
def btad_root(tmp_path):
    r = tmp_path / "btad"
    for cat in ("01", "02"):
        put(r / cat / "train" / "ok" / "0001.bmp")
        put(r / cat / "train" / "ok" / "0000.png")
        put(r / cat / "test" / "ok" / "0000.bmp")
        put(r / cat / "test" / "ko" / "0000.bmp")
        put(r / cat / "test" / "ko" / "0001.bmp")
        put(r / cat / "ground_truth" / "ko" / "0000.png", 255)
        put(r / cat / "ground_truth" / "ko" / "0001.bmp", 255)
    return r


def test_btad_layout(btad_root):
    r = btad_root
    assert detect_dataset(r) == "btad"
    assert list_categories(r, "btad") == ["01", "02"]
    train = load_split(r, "btad", "02", "train")
    assert names(train) == ["0000.png", "0001.bmp"]
    assert {(s.label, s.defect_type, s.mask_path) for s in train} == {(0, "good", None)}
    test = load_split(r, "btad", "01", "test")
    assert [(s.label, s.defect_type, Path(s.image_path).name) for s in test] == [
        (0, "good", "0000.bmp"), (1, "ko", "0000.bmp"), (1, "ko", "0001.bmp")]
    assert [Path(s.mask_path).name for s in test[1:]] == ["0000.png", "0001.bmp"]
    assert all(s.category == "01" for s in test)


def test_btad_missing_mask(btad_root):
    r = btad_root
    (r / "01" / "ground_truth" / "ko" / "0001.bmp").unlink()
    gt = r / "01" / "ground_truth" / "ko"
    with pytest.raises(FileNotFoundError, match=esc(r / "01" / "test" / "ko" / "0001.bmp")
                       + ".*" + esc(gt / "0001.png") + ".*" + esc(gt / "0001.bmp")):
        load_split(r, "btad", "01", "test")


def test_every_missing_mask_of_a_split_is_named_in_one_error(btad_root, visa_root):
    gt = btad_root / "01" / "ground_truth" / "ko"
    for mask in gt.iterdir():
        mask.unlink()
    ko = btad_root / "01" / "test" / "ko"
    with pytest.raises(FileNotFoundError, match=esc(ko / "0000.bmp") + ".*" + esc(gt / "0000.png") + ".*; 2 defective "
                       "images have no ground-truth mask in all, also " + esc(repr(str(ko / "0001.bmp"))) + "$"):
        load_split(btad_root, "btad", "01", "test")
    anomaly = visa_root / "candle" / "Data" / "Images" / "Anomaly"
    for mask in (visa_root / "candle" / "Data" / "Masks" / "Anomaly").iterdir():
        mask.unlink()
    with pytest.raises(FileNotFoundError, match="; 2 defective images have no ground-truth mask in all, also "
                       + esc(repr(str(anomaly / "002.JPG"))) + "$"):
        load_split(visa_root, "visa", "candle", "test")


@pytest.fixture
def mvtec3d_root(tmp_path):
    r = tmp_path / "mvtec3d"
    c = r / "bagel"
    put(c / "train" / "good" / "rgb" / "000.png")
    put(c / "train" / "good" / "rgb" / "001.png")
    (c / "train" / "good" / "xyz").mkdir(parents=True)
    (c / "train" / "good" / "xyz" / "000.tiff").write_bytes(b"ignored")
    put(c / "validation" / "good" / "rgb" / "000.png")
    put(c / "test" / "good" / "rgb" / "000.png")
    put(c / "test" / "good" / "gt" / "000.png", 0)
    for s in ("000", "001"):
        put(c / "test" / "crack" / "rgb" / f"{s}.png")
        put(c / "test" / "crack" / "gt" / f"{s}.png", 255)
    put(c / "test" / "hole" / "rgb" / "000.png")
    put(c / "test" / "hole" / "gt" / "000.png", 255)
    put(r / "tire" / "train" / "good" / "rgb" / "000.png")
    return r


def test_mvtec3d_layout(mvtec3d_root):
    r = mvtec3d_root
    assert detect_dataset(r) == "mvtec3d"
    assert list_categories(r, "mvtec3d") == ["bagel", "tire"]
    train = load_split(r, "mvtec3d", "bagel", "train")
    assert [Path(s.image_path).relative_to(r).as_posix() for s in train] == [
        "bagel/train/good/rgb/000.png", "bagel/train/good/rgb/001.png"]  # validation/ ignored
    test = load_split(r, "mvtec3d", "bagel", "test")
    assert [(s.defect_type, s.label) for s in test] == [("good", 0), ("crack", 1), ("crack", 1),
                                                        ("hole", 1)]
    assert test[0].mask_path is None
    assert [Path(s.mask_path).relative_to(r).as_posix() for s in test[1:]] == [
        "bagel/test/crack/gt/000.png", "bagel/test/crack/gt/001.png", "bagel/test/hole/gt/000.png"]


def test_mvtec3d_missing_mask(mvtec3d_root):
    r = mvtec3d_root
    (r / "bagel" / "test" / "hole" / "gt" / "000.png").unlink()
    with pytest.raises(FileNotFoundError, match=esc(r / "bagel" / "test" / "hole" / "rgb" / "000.png")
                       + ".*" + esc(r / "bagel" / "test" / "hole" / "gt" / "000.png")):
        load_split(r, "mvtec3d", "bagel", "test")


VISA_HEADER = "object,split,label,image,mask\n"


@pytest.fixture
def visa_root(tmp_path):
    r = tmp_path / "visa"
    rows = []
    for cat in ("pcb1", "candle"):
        base = f"{cat}/Data"
        for i in (1, 0):
            put(r / base / "Images" / "Normal" / f"{i:04d}.JPG")
            rows.append(f"{cat},train,normal,{base}/Images/Normal/{i:04d}.JPG,")
        put(r / base / "Images" / "Normal" / "0100.JPG")
        rows.append(f"{cat},test,normal,{base}/Images/Normal/0100.JPG,")
        for i in (3, 2):
            put(r / base / "Images" / "Anomaly" / f"{i:03d}.JPG")
            put(r / base / "Masks" / "Anomaly" / f"{i:03d}.png", 1)
            rows.append(f"{cat},test,anomaly,{base}/Images/Anomaly/{i:03d}.JPG,"
                        f"{base}/Masks/Anomaly/{i:03d}.png")
    (r / "split_csv").mkdir(parents=True)
    (r / "split_csv" / "1cls.csv").write_text(VISA_HEADER + "\n".join(rows) + "\n")
    return r


def test_visa_layout(visa_root):
    r = visa_root
    assert detect_dataset(r) == "visa"
    assert list_categories(r, "visa") == ["candle", "pcb1"]
    train = load_split(r, "visa", "candle", "train")
    assert names(train) == ["0000.JPG", "0001.JPG"]
    assert {(s.label, s.defect_type, s.mask_path, s.category) for s in train} == {
        (0, "good", None, "candle")}
    test = load_split(r, "visa", "pcb1", "test")
    assert [(s.label, s.defect_type, Path(s.image_path).name) for s in test] == [
        (0, "good", "0100.JPG"), (1, "anomaly", "002.JPG"), (1, "anomaly", "003.JPG")]
    assert Path(test[1].mask_path) == r / "pcb1" / "Data" / "Masks" / "Anomaly" / "002.png"
    assert read_mask(test[1].mask_path).all()  # VisA masks store 1, not 255


def test_visa_errors(visa_root):
    r = visa_root
    csv_path = r / "split_csv" / "1cls.csv"
    text = csv_path.read_text()
    mask = r / "candle" / "Data" / "Masks" / "Anomaly" / "003.png"
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=esc(r / "candle" / "Data" / "Images" / "Anomaly"
                                                    / "003.JPG") + ".*" + esc(mask)):
        load_split(r, "visa", "candle", "test")
    csv_path.write_text(text.replace("candle/Data/Masks/Anomaly/003.png", ""))
    with pytest.raises(FileNotFoundError, match="003.JPG.*no mask path.*line"):
        load_split(r, "visa", "candle", "test")
    csv_path.write_text(text.replace("candle,train,normal", "candle,train,good", 1))
    with pytest.raises(ValueError, match=r"line \d+: label must be 'normal' or 'anomaly'"):
        load_split(r, "visa", "candle", "train")
    csv_path.write_text(text.replace("object,", "obj,", 1))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['object'\]"):
        list_categories(r, "visa")
    csv_path.write_text(text)
    (r / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG").unlink()
    with pytest.raises(FileNotFoundError, match=esc(r / "pcb1" / "Data" / "Images" / "Normal" /
                                                    "0000.JPG")):
        load_split(r, "visa", "pcb1", "train")
    with pytest.raises(ValueError, match="unknown VisA category 'bottle'"):
        load_split(r, "visa", "bottle", "test")


def make_folder_category(c: Path, with_gt: bool = True) -> None:
    for n in ("img10", "img2", "img1"):
        put(c / "train" / "good" / f"{n}.jpg")
    put(c / "test" / "good" / "ok.tif")
    put(c / "test" / "dent" / "a.jpeg")
    put(c / "test" / "dent" / "b.png")
    put(c / "test" / "scratch" / "c.BMP")
    if with_gt:
        put(c / "ground_truth" / "dent" / "a_mask.png", 255)
        put(c / "ground_truth" / "scratch" / "c.png", 255)


def test_folder_single_category(tmp_path):
    c = tmp_path / "widget"
    make_folder_category(c)
    assert detect_dataset(c) == "folder"
    assert list_categories(c, "folder") == ["widget"]
    train = load_split(c, "folder", "widget", "train")
    assert names(train) == ["img1.jpg", "img2.jpg", "img10.jpg"]  # natural order
    test = load_split(c, "folder", "widget", "test")
    got = [(s.defect_type, Path(s.image_path).name, s.label,
            None if s.mask_path is None else Path(s.mask_path).name) for s in test]
    assert got == [("good", "ok.tif", 0, None),
                   ("dent", "a.jpeg", 1, "a_mask.png"),
                   ("dent", "b.png", 1, None),  # no mask: allowed for the generic layout
                   ("scratch", "c.BMP", 1, "c.png")]
    assert all(s.category == "widget" for s in test)
    with pytest.raises(ValueError, match="unknown folder category 'gadget'.*widget"):
        load_split(c, "folder", "gadget", "train")


def test_folder_multi_category(tmp_path):
    r = tmp_path / "plant"
    make_folder_category(r / "beta", with_gt=False)
    make_folder_category(r / "alpha", with_gt=False)
    assert detect_dataset(r) == "folder"  # no ground_truth/ -> not MVTec
    assert list_categories(r, "folder") == ["alpha", "beta"]
    test = load_split(r, "folder", "beta", "test")
    assert [s.mask_path for s in test] == [None] * 4
    assert [s.label for s in test] == [0, 1, 1, 1]
    assert all(s.category == "beta" and "/beta/" in Path(s.image_path).as_posix() for s in test)
    for f in (r / "alpha" / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=esc(r / "alpha" / "train" / "good") + ".*no images"):
        load_split(r, "folder", "alpha", "train")


def make_mvtec_ad2_category(c: Path) -> None:
    """A tiny MVTec AD 2 category: train, validation, test_public (good, bad, ground_truth), test_private."""
    for n in ("000_regular", "001_regular"):
        put(c / "train" / "good" / f"{n}.png")
    put(c / "validation" / "good" / "000_regular.png")
    put(c / "test_public" / "good" / "000_regular.png")
    for n in ("000_regular", "001_overexposed"):
        put(c / "test_public" / "bad" / f"{n}.png")
        put(c / "test_public" / "ground_truth" / "bad" / f"{n}_mask.png", 255)
    put(c / "test_private" / "000_regular.png")


def test_mvtec_ad2_layout(tmp_path):
    root = tmp_path / "mvtec_ad2"
    for cat in ("can", "fabric"):
        make_mvtec_ad2_category(root / cat)
    assert detect_dataset(root) == "mvtec_ad2"
    assert list_categories(root, "mvtec_ad2") == ["can", "fabric"]
    train = load_split(root, "mvtec_ad2", "can", "train")
    assert names(train) == ["000_regular.png", "001_regular.png"] and {s.label for s in train} == {0}
    test = load_split(root, "mvtec_ad2", "can", "test")  # test_public only; validation and test_private unused
    assert [(Path(s.image_path).parent.name, s.label, s.defect_type) for s in test] == [
        ("good", 0, "good"), ("bad", 1, "bad"), ("bad", 1, "bad")]
    assert [Path(s.mask_path).name for s in test if s.label] == ["000_regular_mask.png", "001_overexposed_mask.png"]
    (root / "can" / "test_public" / "ground_truth" / "bad" / "001_overexposed_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="MVTec AD 2: defective image .*001_overexposed.png.* no ground-truth mask"):
        load_split(root, "mvtec_ad2", "can", "test")


def test_validation_images_of_mvtec_ad2_and_loco(tmp_path):
    """``<cat>/validation/good`` (MVTec AD 2, MVTec LOCO) are the held-out good images for the threshold."""
    from cpr_engine.data import validation_samples

    root = tmp_path / "mvtec_ad2"
    for cat in ("can", "fabric"):
        make_mvtec_ad2_category(root / cat)
    held_out = validation_samples(root, "mvtec_ad2", "can")
    assert names(held_out) == ["000_regular.png"] and {(s.label, s.mask_path) for s in held_out} == {(0, None)}
    assert validation_samples(root, "mvtec", "can") == []  # MVTec AD has no validation split
    shutil.rmtree(root / "fabric" / "validation")
    assert validation_samples(root, "mvtec_ad2", "fabric") == []
    (root / "can" / "validation" / "good" / "000_regular.png").unlink()
    with pytest.raises(ValueError, match="MVTec AD 2 validation folder.*no images"):
        validation_samples(root, "mvtec_ad2", "can")


def test_mvtec_loco_layout_and_mask_folders(tmp_path):
    """LOCO keeps one mask per defect region in ground_truth/<type>/<stem>/: the mask is their union."""
    root = tmp_path / "loco"
    for cat in ("breakfast_box", "juice_bottle"):
        c = root / cat
        put(c / "train" / "good" / "000.png")
        put(c / "validation" / "good" / "000.png")
        put(c / "test" / "good" / "000.png")
        for kind in ("logical_anomalies", "structural_anomalies"):
            put(c / "test" / kind / "000.png")
            region = np.zeros((8, 8), np.uint8)
            region[:2] = 255
            Image.fromarray(region).save(made_dir(c / "ground_truth" / kind / "000") / "000.png")
            Image.fromarray(region.T.copy()).save(c / "ground_truth" / kind / "000" / "001.png")
    assert detect_dataset(root) == "mvtec_loco"
    test = load_split(root, "mvtec_loco", "juice_bottle", "test")
    assert [(s.label, s.defect_type) for s in test] == [(0, "good"), (1, "logical_anomalies"),
                                                        (1, "structural_anomalies")]
    mask = read_mask(test[1].mask_path, (8, 8))
    assert mask.sum() == 2 * 8 + 2 * 8 - 4 and mask[:2].all() and mask[:, :2].all()  # union of both regions
    with pytest.raises(ImageReadError, match="differs from the size"):
        read_mask(test[1].mask_path, (8, 9))
    for f in Path(test[2].mask_path).iterdir():
        f.unlink()
    with pytest.raises(ImageReadError, match="mask folder holds no mask images"):
        read_mask(test[2].mask_path)
    Path(test[2].mask_path).rmdir()
    with pytest.raises(FileNotFoundError, match="MVTec LOCO: defective image .*structural_anomalies.*000.png"):
        load_split(root, "mvtec_loco", "juice_bottle", "test")


def test_realiad_layout(tmp_path):
    """Real-IAD: per-object JSON lists, every camera view one sample; train keeps the OK entries."""
    import json

    root = tmp_path / "realiad"
    images = root / "realiad_1024"
    def entry(rel, cls, mask=None):
        put(images / rel)
        if mask:
            put(images / mask, 255)
        return {"category": "audiojack", "anomaly_class": cls, "image_path": rel, "mask_path": mask}
    listing = {"meta": {}, "train": [entry("audiojack/OK/S0001/a_C1.jpg", "OK"), entry("audiojack/OK/S0001/a_C2.jpg", "OK"),
                                     entry("audiojack/NG/AK/S0009/n_C1.jpg", "AK", "audiojack/NG/AK/S0009/n_C1.png")],
               "test": [entry("audiojack/OK/S0002/b_C1.jpg", "OK"),
                        entry("audiojack/NG/BX/S0003/c_C1.jpg", "BX", "audiojack/NG/BX/S0003/c_C1.png"),
                        entry("audiojack/NG/AK/S0004/d_C3.jpg", "AK", "audiojack/NG/AK/S0004/d_C3.png")]}
    made_dir(root / "realiad_jsons")
    (root / "realiad_jsons" / "audiojack.json").write_text(json.dumps(listing))
    assert detect_dataset(root) == "realiad" and list_categories(root, "realiad") == ["audiojack"]
    train = load_split(root, "realiad", "audiojack", "train")
    assert names(train) == ["a_C1.jpg", "a_C2.jpg"] and {s.label for s in train} == {0}
    test = load_split(root, "realiad", "audiojack", "test")
    assert [(s.label, s.defect_type) for s in test] == [(0, "good"), (1, "AK"), (1, "BX")]
    assert all(Path(s.mask_path).is_file() for s in test if s.label)
    (images / "audiojack/NG/BX/S0003/c_C1.png").unlink()
    with pytest.raises(FileNotFoundError, match="Real-IAD: defective image .*c_C1.jpg"):
        load_split(root, "realiad", "audiojack", "test")


def test_mpdd_is_the_mvtec_layout(tmp_path):
    """MPDD (metal parts) ships in the MVTec AD layout: detected and loaded as such."""
    root = tmp_path / "mpdd"
    for cat in ("bracket_black", "tubes"):
        put(root / cat / "train" / "good" / "000.png")
        put(root / cat / "test" / "good" / "000.png")
        put(root / cat / "test" / "hole" / "000.png")
        put(root / cat / "ground_truth" / "hole" / "000_mask.png", 255)
    assert detect_dataset(root) == "mvtec"
    test = load_split(root, "mvtec", "tubes", "test")
    assert [(s.label, s.defect_type) for s in test] == [(0, "good"), (1, "hole")]


def test_detect_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=esc(tmp_path / "missing")):
        detect_dataset(tmp_path / "missing")
    (tmp_path / "stuff" / "random").mkdir(parents=True)
    with pytest.raises(ValueError, match="cannot tell the dataset layout of .?" + esc(tmp_path / "stuff")):
        detect_dataset(tmp_path / "stuff")


def test_sample_validation():
    with pytest.raises(ValueError, match="label"):
        Sample("/a.png", 2, None, "good", "c")
    s = Sample("/a.png", 1, None, "dent", "c")
    with pytest.raises(Exception):
        s.label = 0  # frozen


# ==================================================================================================
# demo dataset
# ==================================================================================================
DEMO_KW = dict(categories=("gravel", "coffee"), n_train=3, n_test_good=2, n_test_defect=4, size=128)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo") / "d", seed=0, **DEMO_KW)


def all_files(root) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_constants():
    assert DEMO_CATEGORIES == ("brick", "grass", "gravel", "coffee")
    assert TEXTURE_CATEGORIES == frozenset({"brick", "grass", "gravel"})


def test_demo_loadable_as_mvtec(demo_root):
    r = demo_root
    assert os.path.isabs(r)
    assert detect_dataset(r) == "mvtec"
    assert list_categories(r, "mvtec") == ["coffee", "gravel"]
    for cat in ("coffee", "gravel"):
        train = load_split(r, "mvtec", cat, "train")
        assert len(train) == 3 and all(s.label == 0 for s in train)
        imgs = [read_image(s.image_path) for s in train]
        assert all(i.shape == (128, 128, 3) for i in imgs)
        assert not np.array_equal(imgs[0], imgs[1])  # augmented, not copies
        test = load_split(r, "mvtec", cat, "test")
        assert [s.label for s in test] == [0, 0, 1, 1, 1, 1]
        assert sorted(s.defect_type for s in test if s.label) == ["hole", "patch", "scratch", "stain"]


def test_demo_masks(demo_root):
    for cat in ("coffee", "gravel"):
        for s in load_split(demo_root, "mvtec", cat, "test"):
            if not s.label:
                continue
            assert s.mask_path.endswith(f"ground_truth/{s.defect_type}/"
                                        f"{Path(s.image_path).stem}_mask.png")
            raw = np.asarray(Image.open(s.mask_path))
            assert raw.ndim == 2 and set(np.unique(raw)) <= {0, 255}
            m = read_mask(s.mask_path, read_image(s.image_path).shape[:2], image_path=s.image_path)
            assert 0.003 <= m.mean() <= 0.05, (s, m.mean())


def test_demo_defects_visible(demo_root):
    # inside the mask the colour or the texture differs clearly from a ring just around it
    for s in load_split(demo_root, "mvtec", "gravel", "test") + load_split(demo_root, "mvtec",
                                                                          "coffee", "test"):
        if s.label:
            img = read_image(s.image_path).astype(float)
            m = read_mask(s.mask_path)
            ring = cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~m
            contrast = np.abs(img[m].mean(0) - img[ring].mean(0)).max()
            texture = np.abs(img[m].std(0) - img[ring].std(0)).max()
            assert contrast > 8 or texture > 8, (s.defect_type, contrast, texture)


def test_demo_object_defects_on_cup(demo_root):
    cents = []
    for s in load_split(demo_root, "mvtec", "coffee", "test"):
        if s.label:
            ys, xs = np.nonzero(read_mask(s.mask_path))
            cy, cx = ys.mean() / 128, xs.mean() / 128
            assert 0.15 < cx < 0.85 and 0.1 < cy < 0.85, (s.defect_type, cx, cy)
            cents.append((cx, cy))
    mean = np.mean(cents, axis=0)
    assert np.abs(mean - 0.5).max() < 0.2, mean


def test_demo_object_centred(demo_root):
    # the cup's white rim and the crema stay near the centre in every train image
    for s in load_split(demo_root, "mvtec", "coffee", "train"):
        img = read_image(s.image_path).astype(int)
        white = (img.min(axis=2) > 200)
        ys, xs = np.nonzero(white[:100])
        assert white.sum() > 100
        assert abs(xs.mean() / 128 - 0.5) < 0.15


def test_demo_readme(demo_root):
    text = (Path(demo_root) / "README.txt").read_text()
    for needle in ("CC0", "Rachel Michetti", "Pikolo Espresso Bar", "CC0Textures", "seed=0",
                   "skimage.data.brick()", "bottom half"):
        assert needle in text


def test_demo_deterministic(demo_root, tmp_path):
    first = all_files(demo_root)
    again = all_files(build_demo(tmp_path / "again", seed=0, **DEMO_KW))
    assert first.keys() == again.keys()
    assert first == again  # byte-identical
    other = all_files(build_demo(tmp_path / "other", seed=1, **DEMO_KW))
    assert other.keys() == first.keys()
    pngs = [k for k in first if k.endswith(".png")]
    assert sum(first[k] != other[k] for k in pngs) == len(pngs)


def test_demo_categories_independent(demo_root, tmp_path):
    # one category built alone gives the same files as within a larger build
    alone = all_files(build_demo(tmp_path / "alone", seed=0, **{**DEMO_KW, "categories": "gravel"}))
    full = all_files(demo_root)
    for k, v in alone.items():
        if k != "README.txt":
            assert full[k] == v, k


def test_demo_rebuild_and_refusal(tmp_path):
    r = tmp_path / "d"
    build_demo(r, seed=3, **{**DEMO_KW, "categories": ("gravel",), "n_train": 4})
    build_demo(r, seed=3, **{**DEMO_KW, "categories": ("gravel",)})  # rebuild replaces
    assert len(list((r / "gravel" / "train" / "good").iterdir())) == 3
    (tmp_path / "user" / "gravel").mkdir(parents=True)
    (tmp_path / "user" / "gravel" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=esc(tmp_path / "user" / "gravel")):
        build_demo(tmp_path / "user", **{**DEMO_KW, "categories": ("gravel",)})
    assert (tmp_path / "user" / "gravel" / "precious.txt").exists()


def test_demo_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown demo categories"):
        build_demo(tmp_path, categories=("bottle",))
    with pytest.raises(ValueError, match="size must be an integer >= 64"):
        build_demo(tmp_path, size=32)
    with pytest.raises(ValueError, match="n_train"):
        build_demo(tmp_path, n_train=0)


def test_demo_sources_are_skimage_photos():
    from skimage import data as skdata

    from cpr_engine.data.demo import _load_sources

    src = _load_sources()
    np.testing.assert_array_equal(src["brick"][:, :, 0], skdata.brick())
    np.testing.assert_array_equal(src["coffee"], skdata.coffee())


def test_demo_texture_train_test_regions_disjoint():
    from cpr_engine.data.demo import _texture_view

    src = np.zeros((512, 512, 3), np.float32)
    src[256:] = 255.0  # top half black, bottom half white
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert _texture_view(src, rng, 0, 64, False).mean() < 10  # train: top half only
        assert _texture_view(src, rng, 1, 64, True).mean() > 245  # test: bottom half only


# ==================================================================================================
# no torch
# ==================================================================================================
def test_data_package_is_torch_free():
    for f in (ROOT / "cpr_engine" / "data").glob("*.py"):
        src = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+torch", src, re.M), f
    code = ("import sys, cpr_engine.data, cpr_engine.data.demo, cpr_engine.data.imageio; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

