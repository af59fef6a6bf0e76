"""hist_match: native == PyTorch reference ``cpr_engine.reference.retrieval.hist_match``.

Tolerance: rtol 1e-5, atol 1e-5 (float32 sums of KL terms in another order; the native log is a
~1 ulp polynomial). Histograms with exact zeros and many equal blocks (ties in the block sort)
are included.
"""
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.reference.retrieval import hist_match as reference
from tests.helpers.cases import random_hists, tied_hists
from tests.ops.common import DEVICES, assert_close, cpu_isa, needs_native  # noqa: F401 (fixture)

pytestmark = needs_native


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,n,blocks,bins", [(1, 1, 25, 13), (3, 11, 25, 13), (2, 37, 9, 4), (1, 1000, 25, 13),
                                             (5, 70, 1, 1), (0, 4, 25, 13), (2, 0, 25, 13), (300, 300, 25, 13)])
@pytest.mark.parametrize("kept_fraction", [0.0, 0.5, 0.8, 1.0])
def test_native_equals_reference(b, n, blocks, bins, kept_fraction, device, cpu_isa):
    rng = np.random.default_rng(b * 7 + n + blocks)
    kept = max(1, round(blocks * kept_fraction))
    q, r = random_hists(b, blocks, bins, rng), random_hists(n, blocks, bins, rng)
    want = reference(torch.from_numpy(q), torch.from_numpy(r), kept)
    got = ops.hist_match(torch.from_numpy(q).to(device), torch.from_numpy(r).to(device), kept, impl="native")
    assert got.dtype == torch.float32 and got.shape == (b, n)
    assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kept", [1, 3, 20, 24, 25])
def test_tied_blocks_and_identical_images(kept, device):
    rng = np.random.default_rng(kept)
    q = tied_hists(4, 25, 13, rng)
    r = np.concatenate([q, tied_hists(13, 25, 13, rng)])  # the queries themselves are references too
    got = ops.hist_match(torch.from_numpy(q).to(device), torch.from_numpy(r).to(device), kept, impl="native")
    assert_close(got, reference(torch.from_numpy(q), torch.from_numpy(r), kept), rtol=1e-5, atol=1e-5)
    assert got.diagonal().abs().max() < 1e-5  # an image is at distance ~0 from itself


def test_values_outside_the_fast_log_domain():
    """r + eps == 0 gives log -inf (an infinite block distance) through std::log, like torch."""
    rng = np.random.default_rng(0)
    q, r = random_hists(2, 25, 13, rng), random_hists(3, 25, 13, rng)
    r[0, 3, 2] = -1e-8  # + 1e-8 -> 0 exactly
    r[1, 0:20, 0] = -1e-8  # 20 infinite blocks: kept 20 gives +inf
    got = ops.hist_match(q, r, 20, impl="native")
    want = reference(torch.from_numpy(q), torch.from_numpy(r), 20).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_numpy_in_numpy_out():
    rng = np.random.default_rng(1)
    q, r = random_hists(2, 25, 13, rng), random_hists(5, 25, 13, rng)
    got = ops.hist_match(q, r, 20)
    assert isinstance(got, np.ndarray) and got.shape == (2, 5) and got.dtype == np.float32


@pytest.mark.parametrize("query,refs,kept,err,match", [
    (np.zeros((1, 25, 13), np.float32), np.zeros((2, 25, 12), np.float32), 20, ValueError,
     r"^hist_match: refs must be \(N, 25, 13\) float32, C-contiguous to match query \(1, 25, 13\); got \(2, 25, 12\) float32$"),
    (np.zeros((1, 25, 13), np.float64), np.zeros((2, 25, 13), np.float32), 20, ValueError,
     r"hist_match: query must be \(B, S\*S, M\+1\) float32.*got \(1, 25, 13\) float64"),
    (np.zeros((25, 13), np.float32), np.zeros((2, 25, 13), np.float32), 20, ValueError,
     r"query must be \(B, S\*S, M\+1\).*got \(25, 13\) float32"),
    (np.zeros((1, 25, 13), np.float32), np.zeros((2, 25, 13), np.float32), 26, ValueError,
     r"^hist_match: kept_blocks must be in \[1, 25\]; got 26$"),
    (np.zeros((1, 25, 13), np.float32), np.zeros((2, 25, 13), np.float32), 0, ValueError,
     r"kept_blocks must be in \[1, 25\]; got 0"),
    (np.zeros((1, 25, 13), np.float32), np.zeros((2, 25, 13), np.float32)[:, ::-1], 20, ValueError,
     r"refs must be .*not C-contiguous"),
])
def test_errors(query, refs, kept, err, match):
    from cpr_engine import _C

    with pytest.raises(err, match=match):
        _C.hist_match(query, refs, kept)
