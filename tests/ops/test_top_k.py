"""top_k: native == PyTorch reference ``cpr_engine.reference.retrieval.top_k`` (exact indices).

Ties go to the lower index (stable sort); distances drawn from a few integers make many ties.
"""
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.reference.retrieval import top_k as reference
from tests.helpers.cases import TOP_K_CASES
from tests.ops.common import DEVICES, needs_native

pytestmark = needs_native


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,n,k,with_exclude", TOP_K_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_native_equals_reference(b, n, k, with_exclude, ties, device):
    g = torch.Generator().manual_seed(b * 100 + n + k)
    d = torch.randint(0, 4, (b, n), generator=g).float() if ties else torch.rand(b, n, generator=g)
    exclude = torch.randint(0, n, (b,), generator=g) if with_exclude else None
    want = reference(d, k, exclude)
    got = ops.top_k(d.to(device), k, None if exclude is None else exclude.to(device), impl="native")
    assert got.dtype == torch.int64 and got.device.type == device
    assert got.cpu().tolist() == want.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_order_ties_inf_nan_signed_zero(device):
    d = torch.tensor([[3.0, 1.0, 1.0, 0.5], [0.0, 2.0, 1.0, 1.0],
                      [float("nan"), float("inf"), -1.0, float("-inf")], [0.0, -0.0, 0.0, -1.0]])
    got = ops.top_k(d.to(device), 4, impl="native").cpu().tolist()
    assert got[:2] == [[3, 1, 2, 0], [0, 2, 3, 1]]
    assert got[2] == [3, 2, 1, 0]          # -inf < -1 < inf < NaN
    assert got[3] == [3, 0, 1, 2]          # -0 == +0: index order
    assert got == reference(d, 4).tolist()
    ex = ops.top_k(d[:2].to(device), 10, torch.tensor([3, 0]).to(device), impl="native")
    assert ex.cpu().tolist() == [[1, 2, 0], [2, 3, 1]]


@pytest.mark.parametrize("distances,k,exclude,err,match", [
    (np.zeros((1, 1), np.float32), 1, np.zeros(1, np.int64), ValueError,
     r"^top_k: no reference left to retrieve \(N = 1 with exclude\)$"),
    (np.zeros((2, 3), np.float32), 1, np.array([0, 3]), IndexError, r"^top_k: exclude values must be in \[0, 3\); got \[0, 3\]$"),
    (np.zeros((2, 3), np.float32), 0, None, ValueError, r"^top_k: k must be >= 1; got 0$"),
    (np.zeros((2, 0), np.float32), 1, None, ValueError, r"top_k: distances must be \(B, N\) with N >= 1; got \(2, 0\)"),
    (np.zeros((2, 3), np.float64), 1, None, ValueError, r"top_k: distances must be \(B, N\) float32.*got \(2, 3\) float64"),
    (np.zeros((2, 3), np.float32), 1, np.zeros(3, np.int64), ValueError,
     r"top_k: exclude must be \(2,\) int64, C-contiguous to match distances \(2, 3\); got \(3,\) int64"),
])
def test_errors(distances, k, exclude, err, match):
    from cpr_engine import _C

    with pytest.raises(err, match=match):
        _C.top_k(distances, k, exclude)
