import numpy as np
import pytest
import torch
from scipy import ndimage

from cpr_engine.reference.scoring import fuse_scales, gaussian_blur, gaussian_kernel1d, image_score, postprocess


def test_gaussian_kernel_33_taps_for_sigma_4():
    k = gaussian_kernel1d(4.0)
    assert k.numel() == 33 and abs(float(k.sum()) - 1) < 1e-6
    assert int(k.argmax()) == 16 and torch.allclose(k, k.flip(0))


@pytest.mark.parametrize("h,w", [(40, 40), (37, 51), (320, 320)])
def test_gaussian_blur_matches_scipy_reflect(h, w):
    rng = np.random.default_rng(h)
    x = rng.random((2, h, w)).astype(np.float32)
    got = gaussian_blur(torch.from_numpy(x), 4.0).numpy()
    # torch 'reflect' == scipy 'mirror' (edge sample not repeated); truncate 4 sigma -> radius 16
    want = np.stack([ndimage.gaussian_filter(m.astype(np.float64), 4.0, mode="mirror", truncate=4.0) for m in x])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_blur_small_map_and_zero_sigma():
    x = torch.rand(1, 5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(gaussian_blur(x, 0), x)
    y = gaussian_blur(x, 4.0)  # smaller than the 33-tap kernel: replicate padding
    assert y.shape == x.shape and x.min() <= y.min() and y.max() <= x.max()
    assert torch.allclose(gaussian_blur(torch.full((1, 5, 7), 0.3), 4.0), torch.full((1, 5, 7), 0.3))


def test_image_score_top_t_sum():
    m = torch.arange(100, dtype=torch.float32).view(1, 10, 10)
    assert float(image_score(m, 3)[0]) == 99 + 98 + 97
    assert float(image_score(m, 1000)[0]) == float(m.sum())  # T clipped to H*W


def test_fuse_scales_upsamples_and_sums():
    fine = torch.zeros(1, 8, 8)
    coarse = torch.full((1, 4, 4), 2.0)
    assert torch.allclose(fuse_scales([fine, coarse]), torch.full((1, 8, 8), 2.0))
    coarse[0, 0, 0] = 6.0
    fused = fuse_scales([fine, coarse])
    assert fused[0, 0, 0] == 6.0 and fused[0, 7, 7] == 2.0


def test_postprocess_foreground_zeroes_background():
    local = [torch.ones(1, 80, 80), torch.ones(1, 40, 40)]
    fg = torch.zeros(1, 80, 80)
    fg[:, 20:60, 20:60] = 1
    amap, score = postprocess(local, fg, 320, 4.0, 512)
    assert amap.shape == (1, 320, 320)
    assert amap[0, 0, 0] < 1e-6 and abs(float(amap[0, 160, 160]) - 2.0) < 1e-4
    assert abs(float(score[0]) - 512 * 2.0) < 1e-2
