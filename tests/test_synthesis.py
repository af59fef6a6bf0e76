import cv2
import numpy as np
import pytest

from cpr_engine.training.synthesis import (
    AnomalySource,
    perlin_mask,
    perlin_noise,
    synthesize_anomaly,
    synthesize_scratch,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def make_image(shape=(64, 64), seed=0):
    """Smooth-ish RGB test image (H, W, 3) uint8."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    noise = rng(seed).integers(0, 30, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_textures(folder, n=3, size=(24, 40)):
    """Write n small RGB PNG textures (some in a nested folder, one upper-case suffix)."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    g = rng(123)
    names = [folder / f"t{i}.png" for i in range(n - 1)] + [folder / "sub" / "nested.PNG"]
    for path in names:
        tex = g.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        assert cv2.imwrite(str(path), tex)
    return names


# ---------------------------------------------------------------- perlin_noise

@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (320, 320), (33, 100)])
@pytest.mark.parametrize("res", [(1, 1), (4, 8), (64, 64)])
def test_perlin_noise_shape_dtype_range(shape, res):
    n = perlin_noise(shape, res, rng(1))
    assert n.shape == shape
    assert n.dtype == np.float32
    assert np.isfinite(n).all()
    assert np.abs(n).max() <= 1.5


def test_perlin_noise_smooth_at_low_frequency():
    for seed in range(5):
        n = perlin_noise((128, 160), (2, 2), rng(seed))
        span = float(n.max() - n.min())
        assert span > 0.5
        dy = np.abs(np.diff(n, axis=0)).max()
        dx = np.abs(np.diff(n, axis=1)).max()
        assert max(dy, dx) < 0.1 * span


def test_perlin_noise_deterministic_and_seed_dependent():
    a = perlin_noise((33, 100), (4, 4), rng(7))
    b = perlin_noise((33, 100), (4, 4), rng(7))
    c = perlin_noise((33, 100), (4, 4), rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("shape,res", [((0, 5), (1, 1)), ((5, 5), (0, 2))])
def test_perlin_noise_rejects_bad_arguments(shape, res):
    with pytest.raises(ValueError):
        perlin_noise(shape, res, rng())


# ---------------------------------------------------------------- perlin_mask

@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 96)])
def test_perlin_mask_bool_and_shape(shape):
    m = perlin_mask(shape, rng(3))
    assert m.dtype == bool
    assert m.shape == shape


def test_perlin_mask_coverage_is_plausible():
    fractions = np.array([perlin_mask((128, 128), rng(s)).mean() for s in range(60)])
    assert ((fractions >= 0) & (fractions <= 0.6)).all()
    assert 0.01 < fractions.mean() < 0.3
    assert (fractions > 0).mean() > 0.5  # most draws produce some anomaly region


def test_perlin_mask_deterministic_and_threshold():
    np.testing.assert_array_equal(perlin_mask((50, 70), rng(5)), perlin_mask((50, 70), rng(5)))
    assert not perlin_mask((50, 70), rng(5), threshold=1.01).any()
    assert perlin_mask((50, 70), rng(5), threshold=-1.01).all()
    with pytest.raises(ValueError):
        perlin_mask((50, 70), rng(5), min_scale_exp=3, max_scale_exp=3)


# ---------------------------------------------------------------- AnomalySource

def test_source_from_texture_dir(tmp_path):
    write_textures(tmp_path, n=3)
    src = AnomalySource(texture_dir=str(tmp_path))
    for seed, shape in enumerate([(64, 64), (10, 90), (1, 1), (100, 30)]):
        t = src.sample(shape, rng(seed))
        assert t.shape == (*shape, 3)
        assert t.dtype == np.uint8
    np.testing.assert_array_equal(src.sample((32, 48), rng(9)), src.sample((32, 48), rng(9)))


def test_source_texture_cache_is_bounded(tmp_path):
    write_textures(tmp_path, n=5)
    src = AnomalySource(texture_dir=str(tmp_path), cache_size=2)
    for seed in range(30):
        src.sample((16, 16), rng(seed))
        assert len(src._cache) <= 2


def test_source_texture_converted_bgr_to_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    src = AnomalySource(texture_dir=str(tmp_path))
    loaded = src._load(tmp_path / "red.png")
    np.testing.assert_array_equal(loaded, rgb)


@pytest.mark.parametrize("shape", [(64, 64), (40, 70), (5, 3)])
def test_source_from_images_only(shape):
    images = [make_image((32, 32), seed=s) for s in range(3)]
    src = AnomalySource(images=images)
    outs = [src.sample(shape, rng(s)) for s in range(8)]
    for t in outs:
        assert t.shape == (*shape, 3)
        assert t.dtype == np.uint8
    assert any(not np.array_equal(outs[0], t) for t in outs[1:])


def test_source_errors(tmp_path):
    with pytest.raises(ValueError):
        AnomalySource()
    with pytest.raises(ValueError):
        AnomalySource(images=[])
    with pytest.raises(ValueError, match="images\\[0\\]"):
        AnomalySource(images=[np.zeros((8, 8), np.uint8)])

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        AnomalySource(texture_dir=str(empty))
    (empty / "notes.txt").write_text("not an image")  # non-image files do not count
    with pytest.raises(ValueError, match="empty"):
        AnomalySource(texture_dir=str(empty))

    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        AnomalySource(texture_dir=str(missing))

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.png").write_bytes(b"this is not a png file")
    src = AnomalySource(texture_dir=str(corrupt))  # lazy: listing succeeds
    with pytest.raises(ValueError, match="broken.png"):
        src.sample((16, 16), rng())


# ---------------------------------------------------------------- synthesize_anomaly

@pytest.fixture
def image_source():
    img = make_image((64, 80))
    return img, AnomalySource(images=[img, make_image((48, 48), seed=1)])


def test_synthesize_outside_mask_unchanged_inside_changed(image_source):
    img, src = image_source
    nonempty = 0
    for seed in range(15):
        out, mask = synthesize_anomaly(img, rng(seed), src)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert mask.shape == img.shape[:2] and mask.dtype == bool
        np.testing.assert_array_equal(out[~mask], img[~mask])
        if mask.any():
            nonempty += 1
            assert (out[mask] != img[mask]).any()
    assert nonempty >= 10


def test_synthesize_with_texture_dir(tmp_path):
    write_textures(tmp_path, n=3)
    src = AnomalySource(texture_dir=str(tmp_path))
    img = make_image((50, 60))
    out, mask = synthesize_anomaly(img, rng(4), src, min_area_fraction=0.01)
    assert mask.mean() >= 0.01
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert (out[mask] != img[mask]).any()


def test_synthesize_respects_foreground(image_source):
    img, src = image_source
    fg = np.zeros(img.shape[:2], bool)
    fg[10:50, 5:45] = True
    for seed in range(10):
        out, mask = synthesize_anomaly(img, rng(seed), src, foreground=fg)
        assert not (mask & ~fg).any()
        np.testing.assert_array_equal(out[~fg], img[~fg])


def test_synthesize_min_area(image_source):
    img, src = image_source
    for seed in range(10):
        _, mask = synthesize_anomaly(img, rng(seed), src, min_area_fraction=0.02)
        assert not mask.any() or mask.mean() >= 0.02

    tiny = np.zeros(img.shape[:2], bool)
    tiny[0, :3] = True  # 3 px < 0.2 % of 64*80
    out, mask = synthesize_anomaly(img, rng(0), src, foreground=tiny)
    assert not mask.any()
    np.testing.assert_array_equal(out, img)
    assert out is not img

    # Unreachable area: every retry fails -> unchanged image, empty mask.
    out, mask = synthesize_anomaly(img, rng(0), src, min_area_fraction=0.99)
    assert not mask.any()
    np.testing.assert_array_equal(out, img)


def test_synthesize_deterministic(image_source):
    img, src = image_source
    a = synthesize_anomaly(img, rng(11), src)
    b = synthesize_anomaly(img, rng(11), src)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = synthesize_anomaly(img, rng(12), src)
    assert not np.array_equal(a[1], c[1])


def test_synthesize_rejects_bad_inputs(image_source):
    img, src = image_source
    with pytest.raises(ValueError):
        synthesize_anomaly(img[..., 0], rng(), src)
    with pytest.raises(ValueError):
        synthesize_anomaly(img.astype(np.float32), rng(), src)
    with pytest.raises(ValueError):
        synthesize_anomaly(img, rng(), src, foreground=np.ones((3, 3), bool))


# ---------------------------------------------------------------- synthesize_scratch
def test_scratch_is_a_thin_constant_shift_and_nothing_else():
    rng = np.random.default_rng(3)
    image = rng.integers(60, 190, size=(120, 96, 3), dtype=np.uint8)
    out, mask = synthesize_scratch(image, np.random.default_rng(7))
    assert mask.dtype == bool and mask.shape == (120, 96) and 0.0005 * mask.size <= mask.sum() <= 0.1 * mask.size
    np.testing.assert_array_equal(out[~mask], image[~mask])
    shift = out[mask].astype(int) - image[mask].astype(int)
    assert len(np.unique(shift)) == 1 and 40 <= abs(int(shift[0, 0])) <= 110  # no clipping at these levels
    # thin: eroding by a 5 x 5 square leaves nothing (width <= 1.2 % of 96 px, i.e. 1 px)
    assert not cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).any()
    again, again_mask = synthesize_scratch(image, np.random.default_rng(7))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(again_mask, mask)


def test_scratch_stays_on_the_foreground():
    image = np.full((64, 64, 3), 128, np.uint8)
    fg = np.zeros((64, 64), bool)
    fg[16:48, 16:48] = True
    for seed in range(5):
        _, mask = synthesize_scratch(image, np.random.default_rng(seed), fg)
        assert not (mask & ~fg).any()
    _, mask = synthesize_scratch(image, np.random.default_rng(0), np.zeros((64, 64), bool))
    assert not mask.any()  # nowhere to draw: unchanged image, empty mask
    with pytest.raises(ValueError, match="foreground must have shape"):
        synthesize_scratch(image, np.random.default_rng(0), fg[:10])
