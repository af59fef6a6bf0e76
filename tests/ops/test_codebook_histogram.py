"""codebook_histogram: native == ``codebook_assign`` + ``block_histogram`` of cpr_engine.reference.retrieval.

Ids: equal except where two centers are tied up to float rounding (the reference's matmul sums in
another order): there the two squared distances, computed in float64, must agree to 1e-4 relative.
Histograms: exactly the reference's histogram of the native ids (float32 count / area).
"""
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.reference.retrieval import block_histogram, codebook_assign
from tests.helpers.cases import HIST_CASES
from tests.ops.common import DEVICES, cpu_isa, needs_native  # noqa: F401 (fixture)

pytestmark = needs_native

CASES = HIST_CASES + [(2, 0, 13, 7, 1, 3), (1, 0, 1, 1, 4, 5), (0, 0, 5, 5, 3, 2), (3, 0, 80, 80, 12, 5)]


def _assert_ids_match_up_to_near_ties(got, want, feats, centers):
    got, want = got.cpu().numpy(), want.cpu().numpy()
    differ = got != want
    assert differ.sum() <= 0.01 * differ.size, f"{differ.sum()} of {differ.size} ids differ"
    if differ.any():
        f = feats.double().permute(0, 2, 3, 1).numpy()[differ]      # (n, C)
        c = centers.double().numpy()
        d_got = ((f - c[got[differ]]) ** 2).sum(1)
        d_want = ((f - c[want[differ]]) ** 2).sum(1)
        np.testing.assert_allclose(d_got, d_want, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,n,h,w,m,grid", CASES)
def test_native_equals_reference(b, n, h, w, m, grid, device, cpu_isa):
    g = torch.Generator().manual_seed(h * w + m + b)
    c = 24
    feats = torch.randn(b, c, h, w, generator=g)
    centers = torch.randn(m, c, generator=g)
    ids, hists = ops.codebook_histogram(feats.to(device), centers.to(device), grid, impl="native")
    assert ids.dtype == torch.int64 and ids.shape == (b, h, w)
    assert hists.dtype == torch.float32 and hists.shape == (b, grid * grid, m + 1)
    _assert_ids_match_up_to_near_ties(ids, codebook_assign(feats, centers), feats, centers)
    np.testing.assert_array_equal(hists.cpu().numpy(), block_histogram(ids.cpu(), m, grid).numpy())
    if b:
        np.testing.assert_allclose(hists.sum(-1).cpu().numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_exact_ties_go_to_the_lowest_id(device):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 9, 7, generator=g)
    centers = torch.randn(4, 5, generator=g)
    centers = torch.cat([centers, centers[:2]])  # ids 4 and 5 duplicate ids 0 and 1
    ids, _ = ops.codebook_histogram(feats.to(device), centers.to(device), 3, impl="native")
    assert ids.max() < 4  # exact ties: the lowest id wins
    # the reference's matmul may round duplicate columns differently: compare modulo duplicates
    want = codebook_assign(feats, centers)
    want[want >= 4] -= 4
    _assert_ids_match_up_to_near_ties(ids, want, feats, centers)


def test_padding_counts_as_bin_zero():
    ids_map = np.zeros((1, 2, 5, 5), np.float32)  # C = 2: every pixel nearest center 0
    centers = np.array([[0.0, 0.0], [5.0, 5.0]], np.float32)
    ids, h = ops.codebook_histogram(ids_map, centers, 3)
    assert (ids == 0).all()
    assert h[0, 0].tolist() == [0.0, 1.0, 0.0]
    assert h[0, 2].tolist() == [0.5, 0.5, 0.0]
    assert h[0, 8].tolist() == [0.75, 0.25, 0.0]


@pytest.mark.parametrize("features,centers,grid,err,match", [
    (np.zeros((1, 4, 2, 2), np.float32), np.zeros((3, 5), np.float32), 5, ValueError,
     r"^codebook_histogram: centers must be \(M, 4\) float32, C-contiguous to match features \(1, 4, 2, 2\); "
     r"got \(3, 5\) float32$"),
    (np.zeros((4, 2, 2), np.float32), np.zeros((3, 4), np.float32), 5, ValueError,
     r"features must be \(B, C, H, W\) float32.*got \(4, 2, 2\) float32"),
    (np.zeros((1, 4, 2, 2), np.float64), np.zeros((3, 4), np.float32), 5, ValueError,
     r"features must be \(B, C, H, W\) float32.*float64"),
    (np.zeros((1, 4, 2, 2), np.float32), np.zeros((3, 4), np.float32), 0, ValueError,
     r"^codebook_histogram: grid must be >= 1; got 0$"),
    (np.zeros((1, 4, 2, 2), np.float32), np.zeros((0, 4), np.float32), 5, ValueError,
     r"codebook_histogram: centers must be \(M, C\) with M >= 1; got \(0, 4\)"),
    (np.zeros((1, 0, 2, 2), np.float32), np.zeros((3, 0), np.float32), 5, ValueError,
     r"features must be \(B, C, H, W\) with C, H, W >= 1; got \(1, 0, 2, 2\)"),
])
def test_errors(features, centers, grid, err, match):
    from cpr_engine import _C

    with pytest.raises(err, match=match):
        _C.codebook_histogram(features, centers, grid)
