"""postprocess: native == PyTorch reference ``cpr_engine.reference.scoring.postprocess``.

Tolerances: maps 2e-5 x the map's scale (bilinear weights as torch computes them in float32;
blur taps computed in double, torch's in float32), scores rtol 2e-5 (native sums the top T in
double).
"""
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.reference.scoring import postprocess as reference
from tests.helpers.cases import POSTPROCESS_CASES
from tests.ops.common import DEVICES, assert_close, needs_native

pytestmark = needs_native


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,sizes,out_size,sigma,top_t,with_fg", POSTPROCESS_CASES)
def test_native_equals_reference(b, sizes, out_size, sigma, top_t, with_fg, device):
    g = torch.Generator().manual_seed(out_size + b)
    maps = [torch.rand(b, h, w, generator=g) * 2 for h, w in sizes]
    fg = torch.rand(b, *sizes[0], generator=g) if with_fg else None
    want_map, want_score = reference(maps, fg, out_size, sigma, top_t)
    got_map, got_score = ops.postprocess([m.to(device) for m in maps], None if fg is None else fg.to(device),
                                         out_size, sigma, top_t, impl="native")
    assert got_map.shape == (b, out_size, out_size) and got_score.shape == (b,)
    assert_close(got_map, want_map, atol=2e-5 * float(want_map.abs().max()), rtol=0)
    assert_close(got_score, want_score, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_top_t_with_ties_and_constant_maps(device):
    maps = [torch.full((2, 8, 8), 0.25), torch.full((2, 4, 4), 0.5)]
    amap, score = ops.postprocess([m.to(device) for m in maps], None, 16, 2.0, 10, impl="native")
    assert_close(amap, torch.full((2, 16, 16), 0.75), atol=1e-6, rtol=0)
    assert_close(score, torch.full((2,), 7.5), rtol=1e-6)


def test_numpy_in_numpy_out_and_foreground_zeroes_background():
    local = [np.ones((1, 80, 80), np.float32), np.ones((1, 40, 40), np.float32)]
    fg = np.zeros((1, 80, 80), np.float32)
    fg[:, 20:60, 20:60] = 1
    amap, score = ops.postprocess(local, fg, 320, 4.0, 512)
    assert isinstance(amap, np.ndarray) and amap.shape == (1, 320, 320) and score.dtype == np.float32
    assert amap[0, 0, 0] < 1e-6 and abs(float(amap[0, 160, 160]) - 2.0) < 1e-4
    assert abs(float(score[0]) - 512 * 2.0) < 1e-2


M0 = np.zeros((2, 8, 8), np.float32)


@pytest.mark.parametrize("maps,fg,size,sigma,top_t,err,match", [
    ([M0, np.zeros((1, 4, 4), np.float32)], None, 32, 4.0, 5, ValueError,
     r"^postprocess: maps\[1\] must be \(2, h, w\) float32, C-contiguous; got \(1, 4, 4\) float32$"),
    ([M0], np.zeros((2, 8, 7), np.float32), 32, 4.0, 5, ValueError,
     r"^postprocess: foreground must be \(2, 8, 8\) float32, C-contiguous to match maps\[0\]; got \(2, 8, 7\) float32$"),
    ([M0.astype(np.float16)], None, 32, 4.0, 5, ValueError, r"maps\[0\] must be \(B, h, w\) float32.*float16"),
    ([M0], None, 0, 4.0, 5, ValueError, r"^postprocess: out_size must be >= 1; got 0$"),
    ([M0], None, 32, 4.0, 0, ValueError, r"^postprocess: top_t must be >= 1; got 0$"),
    ([M0], None, 32, float("nan"), 5, ValueError, r"^postprocess: sigma must be finite; got nan$"),
    ([], None, 32, 4.0, 5, ValueError, r"^postprocess: maps must hold at least one map; got 0$"),
    ([np.zeros((2, 0, 8), np.float32)], None, 32, 4.0, 5, ValueError,
     r"postprocess: maps\[0\] must be \(B, h, w\) with h, w >= 1; got \(2, 0, 8\)"),
])
def test_errors(maps, fg, size, sigma, top_t, err, match):
    from cpr_engine import _C

    with pytest.raises(err, match=match):
        _C.postprocess(maps, fg, size, sigma, top_t)
