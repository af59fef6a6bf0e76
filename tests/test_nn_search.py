import numpy as np
import pytest
import torch

from cpr_engine.reference.nn_search import nn_search
from tests.helpers.cases import NN_SEARCH_CASES, unit_descriptors


def ref_nn_search(q, bank, index, r):
    b, d, h, w = q.shape
    p = r // 2
    out = np.zeros((b, h, w))
    for i in range(b):
        for y in range(h):
            for x in range(w):
                best = -np.inf
                for k in index[i]:
                    for yy in range(max(0, y - p), min(h, y + p + 1)):
                        for xx in range(max(0, x - p), min(w, x + p + 1)):
                            best = max(best, float(q[i, :, y, x] @ bank[k, :, yy, xx]))
                out[i, y, x] = 1 - best
    return out


@pytest.mark.parametrize("b,d,h,w,n,k,r", NN_SEARCH_CASES)
def test_nn_search_equals_loop_reference(b, d, h, w, n, k, r):
    g = torch.Generator().manual_seed(b * 100 + h * 10 + w)
    q = unit_descriptors((b, d, h, w), g)
    bank = unit_descriptors((n, d, h, w), g)
    index = torch.randint(0, n, (b, k), generator=g)
    got = nn_search(q, bank, index, r)
    assert got.shape == (b, h, w) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref_nn_search(q.numpy(), bank.numpy(), index.numpy(), r), atol=1e-5)


def test_nn_search_finds_shifted_copy_only_inside_window():
    g = torch.Generator().manual_seed(0)
    bank = unit_descriptors((1, 8, 6, 6), g)
    q = torch.roll(bank, shifts=1, dims=3)  # every descriptor moved one column right
    index = torch.zeros(1, 1, dtype=torch.long)
    assert nn_search(q, bank, index, 3)[0, :, 1:].abs().max() < 1e-6  # found at offset -1
    assert nn_search(q, bank, index, 1)[0, :, 1:].min() > 1e-3       # r = 1 cannot see it


def test_nn_search_fp16_bank_within_tolerance():
    g = torch.Generator().manual_seed(1)
    q = unit_descriptors((2, 32, 9, 7), g)
    bank = unit_descriptors((5, 32, 9, 7), g)
    index = torch.tensor([[0, 3], [4, 1]])
    full = nn_search(q, bank, index, 3)
    half = nn_search(q, bank.half(), index, 3)
    assert (full - half).abs().max() < 2e-3


def test_nn_search_errors():
    q = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match=r"bank must be \(N, 4, 5, 5\).*got \(2, 4, 5\)"):
        nn_search(q, torch.zeros(2, 4, 5), torch.zeros(1, 1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"index must be \(1, K\)"):
        nn_search(q, torch.zeros(2, 4, 5, 5), torch.zeros(2, 1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="window must be odd"):
        nn_search(q, torch.zeros(2, 4, 5, 5), torch.zeros(1, 1, dtype=torch.long), 2)
    with pytest.raises(IndexError, match=r"index values must be in \[0, 2\), got \[0, 2\]"):
        nn_search(q, torch.zeros(2, 4, 5, 5), torch.tensor([[0, 2]]), 3)
