"""Tests for cpr_engine.metrics (scikit-learn is used only here, as the reference)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)

from cpr_engine.metrics import (
    compute_all,
    f1_max,
    image_auroc,
    pixel_ap,
    pixel_aupro,
    pixel_auroc,
)

SEEDS = [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- helpers
def _random_image_case(seed, n=300, decimals=2):
    """Scores with many ties (rounded), labels loosely correlated with them."""
    r = np.random.default_rng(seed)
    labels = r.random(n) < 0.3
    scores = np.round(r.random(n) * 0.7 + 0.3 * labels, decimals)
    return scores, labels.astype(int)


def _blob_masks(r, n, h, w, sigma=1.5, frac=0.12):
    """Random blob masks of irregular sizes (several regions per image, some empty images)."""
    noise = ndimage.gaussian_filter(r.random((n, h, w)), sigma=(0, sigma, sigma))
    thr = np.quantile(noise, 1.0 - frac)
    masks = noise > thr
    masks[0] = False  # one image without any anomaly
    return masks


def _random_pixel_case(seed, n=4, h=14, w=14, decimals=2, dtype=np.float64):
    r = np.random.default_rng(seed)
    masks = _blob_masks(r, n, h, w)
    maps = r.random((n, h, w)) * 0.8 + 0.35 * masks
    maps = np.round(maps, decimals).astype(dtype)
    return maps, masks


def _aupro_reference(maps, masks, fpr_limit=0.3):
    """Slow independent AUPRO: dense sweep over every unique score.

    For each threshold t (descending): FPR = mean(normal pixels >= t), PRO = mean over the
    8-connected regions of mean(region pixels >= t). Curve starts at (0, 0); trapezoid up to
    fpr_limit with linear interpolation at the limit; divided by fpr_limit.
    """
    structure = np.ones((3, 3), dtype=bool)
    regions = []
    for i in range(masks.shape[0]):
        lab, k = ndimage.label(masks[i], structure=structure)
        for j in range(1, k + 1):
            regions.append(maps[i][lab == j])
    neg = maps[~masks]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fprs.append(np.mean(neg >= t))
        pros.append(np.mean([np.mean(reg >= t) for reg in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    j = int(np.count_nonzero(fprs <= fpr_limit))  # fprs is non-decreasing: a prefix
    x, y = fprs[:j], pros[:j]
    if j < fprs.size:
        x0, y0, x1, y1 = fprs[j - 1], pros[j - 1], fprs[j], pros[j]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (fpr_limit - x0) * (y1 - y0) / (x1 - x0))
    area = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)
    return area / fpr_limit


def _sklearn_f1max(scores, labels):
    p, rcl, thr = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + rcl > 0, 2 * p * rcl / (p + rcl), 0.0)
    best = f1.max()
    best_thr = thr[np.isclose(f1[:-1], best, rtol=0, atol=1e-12)].max()
    return best, best_thr


# ----------------------------------------------------------------------------- hand-computed
def test_auroc_perfect_and_reversed():
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    y = np.array([0, 0, 0, 1, 1])
    assert image_auroc(s, y) == 1.0
    assert image_auroc(-s, y) == 0.0
    assert image_auroc(s, y.astype(bool)) == 1.0


def test_auroc_hand_ties():
    # pos {0.4, 0.8}, neg {0.1, 0.4}: pairs (0.4>0.1)=1, (0.4==0.4)=0.5, (0.8>.)=1+1 -> 3.5/4
    assert image_auroc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875, abs=1e-15)
    # all scores equal: every pair is a tie -> 0.5
    assert image_auroc([0.3] * 6, [0, 1, 0, 1, 1, 0]) == 0.5


def test_auroc_hand_no_ties():
    # classic example: pos {0.35, 0.8}, neg {0.1, 0.4} -> pairs won 1 + 0 + 1 + 1 = 3 of 4
    assert image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75, abs=1e-15)


def test_pixel_auroc_hand():
    maps = np.array([0.1, 0.4, 0.4, 0.8]).reshape(1, 2, 2)
    masks = np.array([0, 0, 1, 1], dtype=bool).reshape(1, 2, 2)
    assert pixel_auroc(maps, masks) == pytest.approx(0.875, abs=1e-15)


def test_ap_hand():
    # thresholds 0.8: tp1 fp0 (P=1, R=.5); 0.4: tp1 fp1; 0.35: tp2 fp1 (P=2/3, R=1)
    # AP = 0.5*1 + 0.5*2/3 = 5/6
    maps = np.array([0.1, 0.4, 0.35, 0.8]).reshape(1, 1, 4)
    masks = np.array([0, 0, 1, 1], dtype=bool).reshape(1, 1, 4)
    assert pixel_ap(maps, masks) == pytest.approx(5 / 6, abs=1e-15)


def test_ap_hand_ties():
    # scores 0.9(neg) 0.5(pos) 0.5(pos) 0.5(neg) 0.1(pos); P = 3
    # t=0.9: tp0 fp1 (R=0); t=0.5: tp2 fp2 -> P=1/2, R=2/3; t=0.1: tp3 fp2 -> P=3/5, R=1
    # AP = 2/3*1/2 + 1/3*3/5 = 1/3 + 1/5 = 8/15
    maps = np.array([0.9, 0.5, 0.5, 0.5, 0.1]).reshape(1, 1, 5)
    masks = np.array([0, 1, 1, 0, 1], dtype=bool).reshape(1, 1, 5)
    assert pixel_ap(maps, masks) == pytest.approx(8 / 15, abs=1e-15)
    assert pixel_ap(maps, masks) == pytest.approx(
        average_precision_score(masks.ravel(), maps.ravel()), abs=1e-15
    )


def test_f1_hand():
    # P = 3; F1 = 2tp/(tp+fp+P)
    # t=.9: 2/4; t=.8: 2/5; t=.7: 4/6; t=.6: 6/7 (best); t=.2: 6/8
    f1, thr = f1_max([0.9, 0.8, 0.7, 0.6, 0.2], [1, 0, 1, 1, 0])
    assert f1 == pytest.approx(6 / 7, abs=1e-15)
    assert thr == 0.6


def test_f1_hand_ties():
    # scores 0.9(pos) 0.5(pos) 0.5(neg) 0.5(pos) 0.1(neg); P = 3
    # t=.9: 2/(1+0+3)=1/2; t=.5: 2*3/(3+1+3)=6/7 (best); t=.1: 6/8
    f1, thr = f1_max([0.9, 0.5, 0.5, 0.5, 0.1], [1, 1, 0, 1, 0])
    assert f1 == pytest.approx(6 / 7, abs=1e-15)
    assert thr == 0.5


def test_perfect_and_reversed_all_metrics():
    r = np.random.default_rng(7)
    masks = _blob_masks(r, 3, 16, 16)
    maps = np.where(masks, 0.6 + 0.4 * r.random(masks.shape), 0.4 * r.random(masks.shape))
    assert pixel_auroc(maps, masks) == 1.0
    assert pixel_ap(maps, masks) == 1.0
    assert pixel_aupro(maps, masks) == pytest.approx(1.0, abs=1e-12)
    f1, thr = f1_max(maps, masks)
    assert f1 == 1.0 and thr == maps[masks].min()
    assert pixel_auroc(-maps, masks) == 0.0
    assert pixel_aupro(-maps, masks) == 0.0


# Hand-worked AUPRO, 1x4x4 (rows), regions A (2x2 block, area 4) and B (single pixel, area 1):
#   scores          mask
#   .9  .8  .85 .6  A A . .
#   .4  .2  .4  .3  A A . .
#   .1  .1  .1  .1  . . . .
#   .05 .05 0   .7  . . . B
# A = {.9, .8, .4, .2}, B = {.7}; 11 normal pixels {.85, .6, .4, .3, .1 x4, .05 x2, 0}.
# PRO = (frac_A + frac_B) / 2, FPR = #normal >= t / 11. Points by descending threshold:
#   start (0, 0); t=.9 (0, 1/8); t=.85 (1/11, 1/8); t=.8 (1/11, 1/4); t=.7 (1/11, 3/4);
#   t=.6 (2/11, 3/4); t=.4 (3/11, 7/8) [normal .4 ties with A's .4: a diagonal segment];
#   t=.3 (4/11, 7/8); t=.2 (4/11, 1); t=.1 (8/11, 1); t=.05 (10/11, 1); t=0 (1, 1).
# Trapezoids: [0,1/11]: 1/8 * 1/11 = 2/176; [1/11,2/11]: 3/4 * 1/11 = 12/176;
#   [2/11,3/11]: (3/4 + 7/8)/2 * 1/11 = 13/176; so 27/176 up to FPR 3/11.
# limit 0.3: + 7/8 * (0.3 - 3/11) = 7/8 * 0.3/11 = 4.2/176 -> 31.2/176 / 0.3 = 13/22.
# limit 0.25 (cuts the diagonal): PRO(0.25) = 3/4 + (0.25 - 2/11) * 11 * 1/8 = 27/32;
#   area = 14/176 + (0.25 - 2/11) * (3/4 + 27/32)/2 = 7/88 + 3/44 * 51/64 = 377/2816
#   -> / 0.25 = 377/704.
# limit 1: 27/176 + 7/8 * 1/11 + 1 * 7/11 = (27 + 14 + 112)/176 = 153/176.
_HAND_MAP = np.array(
    [[0.9, 0.8, 0.85, 0.6], [0.4, 0.2, 0.4, 0.3], [0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.0, 0.7]]
)[None]
_HAND_MASK = np.array(
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=bool
)[None]


@pytest.mark.parametrize(
    "limit, expected", [(0.3, 13 / 22), (0.25, 377 / 704), (1.0, 153 / 176)]
)
def test_aupro_hand_two_regions(limit, expected):
    assert pixel_aupro(_HAND_MAP, _HAND_MASK, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)
    assert _aupro_reference(_HAND_MAP, _HAND_MASK, limit) == pytest.approx(expected, abs=1e-12)


def test_aupro_default_limit_is_0_3():
    assert pixel_aupro(_HAND_MAP, _HAND_MASK) == pytest.approx(13 / 22, abs=1e-12)


def test_aupro_uses_8_connectivity():
    # Mask pixels (0,0), (1,1), (1,2): one 8-connected region of area 3 (two 4-connected
    # regions of areas 1 and 2). Scores (0,0)=.9, (1,1)=(1,2)=.8; normal: one .85, five 0.
    # 8-conn: (0,0) -> (0,1/3) -> (1/6,1/3) -> (1/6,1) -> (1,1);
    # area to 0.3 = 1/6*1/3 + (0.3-1/6)*1 = 17/90 -> /0.3 = 17/27
    # (4-conn would give 1/6*1/2 + 2/15 = 13/60 -> 13/18).
    maps = np.array([[0.9, 0.0, 0.0], [0.85, 0.8, 0.8], [0.0, 0.0, 0.0]])[None]
    masks = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)[None]
    assert pixel_aupro(maps, masks) == pytest.approx(17 / 27, abs=1e-12)


def test_aupro_constant_map():
    # all scores tie: the curve is the straight diagonal (0,0)->(1,1): area L^2/2 -> L/2
    maps = np.full((2, 5, 5), 0.25)
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 4, 4] = True
    assert pixel_aupro(maps, masks) == pytest.approx(0.15, abs=1e-12)
    assert pixel_aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5, abs=1e-12)
    assert pixel_auroc(maps, masks) == 0.5


# ----------------------------------------------------------------------------- vs scikit-learn
@pytest.mark.parametrize("seed", SEEDS)
def test_image_auroc_vs_sklearn(seed):
    s, y = _random_image_case(seed)
    assert len(np.unique(s)) < len(s)  # ties present
    assert image_auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_image_auroc_vs_sklearn_coarse_ties(seed):
    s, y = _random_image_case(seed, n=500, decimals=1)
    assert image_auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_max_vs_sklearn(seed):
    s, y = _random_image_case(seed)
    f1, thr = f1_max(s, y)
    ref_f1, ref_thr = _sklearn_f1max(s, y)
    assert f1 == pytest.approx(ref_f1, abs=1e-9)
    assert thr == ref_thr
    assert f1_score(y, s >= thr) == pytest.approx(f1, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pixel_metrics_vs_sklearn(seed, dtype):
    maps, masks = _random_pixel_case(seed, n=5, h=20, w=20, dtype=dtype)
    s, y = maps.ravel(), masks.ravel()
    assert len(np.unique(s)) < 200  # heavy ties
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    f1, thr = f1_max(maps, masks)
    ref_f1, ref_thr = _sklearn_f1max(s, y)
    assert f1 == pytest.approx(ref_f1, abs=1e-9)
    assert thr == float(ref_thr)


@pytest.mark.parametrize("seed", SEEDS)
def test_pixel_metrics_vs_sklearn_continuous(seed):
    r = np.random.default_rng(100 + seed)
    masks = _blob_masks(r, 3, 24, 24)
    maps = (r.random(masks.shape) + 0.5 * masks).astype(np.float32)
    s, y = maps.ravel(), masks.ravel()
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(y, s), abs=1e-9)


# ----------------------------------------------------------------------------- AUPRO vs reference
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("limit", [0.3, 0.05, 0.5, 1.0])
def test_aupro_vs_reference(seed, limit):
    maps, masks = _random_pixel_case(seed, n=4, h=14, w=14)
    ref = _aupro_reference(maps, masks, limit)
    assert pixel_aupro(maps, masks, fpr_limit=limit) == pytest.approx(ref, abs=1e-6)
    assert pixel_aupro(maps, masks, fpr_limit=limit) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_aupro_vs_reference_unrounded_float32(seed):
    r = np.random.default_rng(50 + seed)
    masks = _blob_masks(r, 3, 12, 12, sigma=1.0, frac=0.2)
    maps = (r.random(masks.shape) + 0.3 * masks).astype(np.float32)
    assert pixel_aupro(maps, masks) == pytest.approx(_aupro_reference(maps, masks), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_monotonic_transform_invariance(seed):
    maps, masks = _random_pixel_case(seed, n=4, h=16, w=16)
    transformed = np.exp(3.0 * maps) - 7.0  # strictly increasing, keeps ties and order
    for fn in (pixel_aupro, pixel_auroc, pixel_ap):
        assert fn(transformed, masks) == pytest.approx(fn(maps, masks), abs=1e-12)
    assert f1_max(transformed, masks)[0] == pytest.approx(f1_max(maps, masks)[0], abs=1e-12)


def test_region_size_matters_not_pixel_count():
    # Two regions of sizes 1 and 8: detecting only the small one gives PRO 1/2, not 1/9.
    maps = np.zeros((1, 6, 6))
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 0, 0] = True
    masks[0, 3:5, 2:6] = True
    maps[0, 0, 0] = 1.0
    # curve: (0,0) -> (0,1/2) at t=1, then one diagonal to (1,1) at t=0 (all other pixels tie)
    # PRO(F) = 1/2 + F/2 on [0,1]; integral to 0.3 = 0.15 + 0.0225 = 0.1725 -> /0.3 = 0.575
    assert pixel_aupro(maps, masks) == pytest.approx(0.575, abs=1e-12)


# ----------------------------------------------------------------------------- compute_all
def test_compute_all_keys_and_consistency():
    maps, masks = _random_pixel_case(3, n=6, h=16, w=16, dtype=np.float32)
    s, y = _random_image_case(3, n=6)
    y[:2] = [0, 1]
    out = compute_all(s, y, maps, masks)
    assert set(out) == {
        "image_AUROC", "image_F1max", "pixel_AUROC", "pixel_AUPRO", "pixel_AP", "pixel_F1max"
    }
    assert all(isinstance(v, float) for v in out.values())
    assert out["image_AUROC"] == image_auroc(s, y)
    assert out["image_F1max"] == f1_max(s, y)[0]
    assert out["pixel_AUROC"] == pytest.approx(pixel_auroc(maps, masks), abs=1e-15)
    assert out["pixel_AUPRO"] == pytest.approx(pixel_aupro(maps, masks), abs=1e-15)
    assert out["pixel_AP"] == pytest.approx(pixel_ap(maps, masks), abs=1e-15)
    assert out["pixel_F1max"] == pytest.approx(f1_max(maps, masks)[0], abs=1e-15)
    assert compute_all(s, y, maps, masks, fpr_limit=0.1)["pixel_AUPRO"] == pytest.approx(
        pixel_aupro(maps, masks, fpr_limit=0.1), abs=1e-15
    )


def test_compute_all_image_only():
    out = compute_all([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1])
    assert set(out) == {"image_AUROC", "image_F1max"}
    assert out["image_AUROC"] == pytest.approx(0.875)


def test_inputs_not_modified_and_views_accepted():
    maps, masks = _random_pixel_case(1, n=3, h=10, w=12, dtype=np.float32)
    maps_c, masks_c = maps.copy(), masks.copy()
    ref = compute_all([0.2, 0.9, 0.5], [0, 1, 1], maps, masks)
    np.testing.assert_array_equal(maps, maps_c)
    np.testing.assert_array_equal(masks, masks_c)
    # non-contiguous views (transposed H/W) give the same pixel metrics
    out = compute_all(
        [0.2, 0.9, 0.5], [0, 1, 1], maps.transpose(0, 2, 1), masks.transpose(0, 2, 1)
    )
    for k in ("pixel_AUROC", "pixel_AUPRO", "pixel_AP", "pixel_F1max"):
        assert out[k] == pytest.approx(ref[k], abs=1e-12)
    # masks as 0/1 integers work like bool
    assert pixel_aupro(maps, masks.astype(np.uint8)) == pixel_aupro(maps, masks)


def test_compute_all_scale():
    r = np.random.default_rng(0)
    n, h, w = 40, 320, 320
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(0, n, 2):
        y0, x0 = r.integers(0, h - 60, 2)
        masks[i, y0:y0 + r.integers(5, 60), x0:x0 + r.integers(5, 60)] = True
    maps = r.random((n, h, w), dtype=np.float32)
    maps += np.float32(0.3) * masks
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.reshape(n, -1).max(axis=1)
    out = compute_all(scores, labels, maps, masks)
    assert len(out) == 6
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["pixel_AUROC"] > 0.5 and out["pixel_AUPRO"] > 0.0


# ----------------------------------------------------------------------------- errors
def test_image_errors():
    with pytest.raises(
        ValueError,
        match=r"image_auroc: scores and labels must have the same shape; "
        r"got scores shape \(3,\) and labels shape \(4,\)",
    ):
        image_auroc([0.1, 0.2, 0.3], [0, 1, 0, 1])
    with pytest.raises(
        ValueError, match=r"image_auroc: expected 1-D scores and labels of shape \(N,\); "
        r"got scores shape \(2, 2\) and labels shape \(2, 2\)"
    ):
        image_auroc(np.ones((2, 2)), np.array([[0, 1], [1, 0]]))
    with pytest.raises(
        ValueError, match=r"image_auroc: empty input; got scores shape \(0,\) and labels shape \(0,\)"
    ):
        image_auroc([], [])
    with pytest.raises(
        ValueError,
        match=r"image_auroc: scores contain NaN or inf \(1 NaN, 0 inf of 4 values\); "
        r"got scores shape \(4,\)",
    ):
        image_auroc([0.1, np.nan, 0.3, 0.4], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"scores contain NaN or inf \(0 NaN, 2 inf of 4 values\)"):
        image_auroc([np.inf, -np.inf, 0.3, 0.4], [0, 1, 0, 1])
    with pytest.raises(
        ValueError,
        match=r"image_auroc: labels contain only one class \(all 0\); AUROC is undefined.*"
        r"got scores shape \(3,\) and labels shape \(3,\)",
    ):
        image_auroc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(
        ValueError, match=r"image_auroc: labels contain only one class \(all 1\); AUROC is undefined"
    ):
        image_auroc([0.1, 0.2, 0.3], np.array([True, True, True]))
    with pytest.raises(
        ValueError,
        match=r"image_auroc: labels must be binary \(bool or 0/1\); found values outside "
        r"\{0, 1\} \(e\.g\. 2\) with shape \(3,\)",
    ):
        image_auroc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"image_auroc: labels must be binary.*dtype <U1"):
        image_auroc([0.1, 0.2], ["a", "b"])
    with pytest.raises(ValueError, match=r"image_auroc: scores must be real numbers; got dtype"):
        image_auroc(["x", "y"], [0, 1])


def test_f1_errors():
    with pytest.raises(
        ValueError,
        match=r"f1_max: scores and labels must have the same shape; "
        r"got scores shape \(2,\) and labels shape \(3,\)",
    ):
        f1_max([0.1, 0.2], [0, 1, 1])
    with pytest.raises(
        ValueError, match=r"f1_max: labels contain only one class \(all 0\); F1-max is undefined"
    ):
        f1_max([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match=r"f1_max: empty input"):
        f1_max(np.zeros(0), np.zeros(0, dtype=bool))
    with pytest.raises(ValueError, match=r"f1_max: scores contain NaN or inf"):
        f1_max([0.1, np.nan], [0, 1])


_PIXEL_FNS = [
    ("pixel_auroc", pixel_auroc, "AUROC"),
    ("pixel_ap", pixel_ap, "AP"),
    ("pixel_aupro", pixel_aupro, "AUPRO"),
]


@pytest.mark.parametrize("name, fn, metric", _PIXEL_FNS)
def test_pixel_errors(name, fn, metric):
    maps = np.random.default_rng(0).random((2, 4, 4))
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1, 1] = True
    fn(maps, masks)  # valid input works
    with pytest.raises(
        ValueError,
        match=rf"{name}: maps and masks must have the same shape \(N, H, W\); "
        r"got maps shape \(2, 4, 4\) and masks shape \(2, 4, 5\)",
    ):
        fn(maps, np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected maps and masks of shape \(N, H, W\); "
        r"got maps shape \(4, 4\) and masks shape \(4, 4\)",
    ):
        fn(maps[0], masks[0])
    with pytest.raises(
        ValueError, match=rf"{name}: empty input; got maps shape \(0, 4, 4\) and masks shape \(0, 4, 4\)"
    ):
        fn(maps[:0], masks[:0])
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(
        ValueError,
        match=rf"{name}: maps contain NaN or inf \(1 NaN, 0 inf of 32 values\); "
        r"got maps shape \(2, 4, 4\) and masks shape \(2, 4, 4\)",
    ):
        fn(bad, masks)
    with pytest.raises(
        ValueError,
        match=rf"{name}: masks contain no anomalous pixel \(all False\); {metric} is undefined; "
        r"got maps shape \(2, 4, 4\) and masks shape \(2, 4, 4\)",
    ):
        fn(maps, np.zeros_like(masks))
    with pytest.raises(
        ValueError,
        match=rf"{name}: masks contain no normal pixel \(all True\); {metric} is undefined; "
        r"got maps shape \(2, 4, 4\)",
    ):
        fn(maps, np.ones_like(masks))
    with pytest.raises(
        ValueError,
        match=rf"{name}: masks must be binary \(bool or 0/1\); found values outside "
        r"\{0, 1\} \(e\.g\. 255\) with shape \(2, 4, 4\)",
    ):
        fn(maps, masks.astype(np.uint8) * 255)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_aupro_fpr_limit_errors(bad):
    with pytest.raises(ValueError, match=r"pixel_aupro: fpr_limit must be .*in \(0, 1\]; got"):
        pixel_aupro(_HAND_MAP, _HAND_MASK, fpr_limit=bad)


def test_compute_all_errors():
    maps, masks = _HAND_MAP, _HAND_MASK
    with pytest.raises(
        ValueError,
        match=r"compute_all: maps and masks must be given together; "
        r"got maps shape \(1, 4, 4\) and masks None",
    ):
        compute_all([0.1, 0.9], [0, 1], maps=maps)
    with pytest.raises(ValueError, match=r"compute_all: maps and masks must be given together"):
        compute_all([0.1, 0.9], [0, 1], masks=masks)
    with pytest.raises(
        ValueError, match=r"compute_all: labels contain only one class \(all 1\)"
    ):
        compute_all([0.1, 0.9], [1, 1], maps, masks)
    with pytest.raises(
        ValueError, match=r"compute_all: masks contain no anomalous pixel \(all False\)"
    ):
        compute_all([0.1, 0.9], [0, 1], maps, np.zeros_like(masks))
    with pytest.raises(
        ValueError, match=r"compute_all: maps and masks must have the same shape \(N, H, W\)"
    ):
        compute_all([0.1, 0.9], [0, 1], maps, masks[:, :3])
    with pytest.raises(ValueError, match=r"compute_all: fpr_limit must be in \(0, 1\]"):
        compute_all([0.1, 0.9], [0, 1], maps, masks, fpr_limit=2.0)


def test_pro_curve_integrates_to_aupro():
    """Without ties, the trapezoid area under pro_curve (continued flat to FPR 1) is AUPRO at limit 1."""
    from cpr_engine.metrics import pixel_aupro, pro_curve

    rng = np.random.default_rng(3)
    maps = rng.random((3, 9, 7))
    masks = np.zeros((3, 9, 7), bool)
    masks[0, 1:4, 1:3] = True
    masks[1, 5:9, 4:7] = True
    masks[1, 0, 0] = True  # a one-pixel region
    maps[masks] += 0.4
    fpr, pro = pro_curve(maps, masks, fpr_limit=1.0, max_points=10_000)
    assert fpr[0] == pro[0] == 0 and np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    assert pro[-1] == pytest.approx(1.0)
    area = np.trapz(pro, fpr) + (1.0 - fpr[-1]) * pro[-1]
    assert area == pytest.approx(pixel_aupro(maps, masks, fpr_limit=1.0), abs=1e-9)
    short_fpr, _ = pro_curve(maps, masks, fpr_limit=0.3, max_points=5)
    assert len(short_fpr) <= 5 and short_fpr.max() <= 0.3
