"""nn_search: native (C++ / CUDA) == PyTorch reference ``cpr_engine.reference.nn_search.nn_search``.

Tolerances: float32 bank 1e-5 absolute (dot products of unit vectors summed in another order);
float16 bank 1e-5 against the reference on the same float16 bank, 2e-3 against the float32 bank.
"""
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.reference.nn_search import nn_search as reference
from tests.helpers.cases import NN_SEARCH_MULTI_CASES, NN_SEARCH_NATIVE_CASES, unit_descriptors
from tests.ops.common import DEVICES, assert_close, cpu_isa, needs_native  # noqa: F401 (fixture)

pytestmark = needs_native


def _inputs(b, d, h, w, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    q = unit_descriptors((b, d, h, w), g)
    bank = unit_descriptors((n, d, h, w), g)
    index = torch.randint(0, n, (b, k), generator=g)
    return q, bank, index


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,d,h,w,n,k,r", NN_SEARCH_NATIVE_CASES)
def test_native_equals_reference(b, d, h, w, n, k, r, device, cpu_isa):
    q, bank, index = _inputs(b, d, h, w, n, k, seed=b * 1000 + d * 100 + h * 10 + w)
    want = reference(q, bank, index, r)
    got = ops.nn_search(q.to(device), bank.to(device), index.to(device), r, impl="native")
    assert got.dtype == torch.float32 and got.device.type == device
    assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,d,h,w,n,k,r", NN_SEARCH_NATIVE_CASES[:6])
def test_fp16_bank(b, d, h, w, n, k, r, device, cpu_isa):
    q, bank, index = _inputs(b, d, h, w, n, k, seed=7 + h)
    half = bank.half()
    got = ops.nn_search(q.to(device), half.to(device), index.to(device), r, impl="native")
    assert_close(got, reference(q, half, index, r), atol=1e-5, rtol=0)   # same fp16 values
    assert_close(got, reference(q, bank, index, r), atol=2e-3, rtol=0)   # vs the fp32 bank


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,n,k,scales", NN_SEARCH_MULTI_CASES)
def test_every_scale_in_one_call(b, n, k, scales, device):
    g = torch.Generator().manual_seed(len(scales))
    index = torch.randint(0, n, (b, k), generator=g)
    qs = [unit_descriptors((b, d, h, w), g) for d, h, w, _ in scales]
    banks = [unit_descriptors((n, d, h, w), g) for d, h, w, _ in scales]
    banks[-1] = banks[-1].half()  # scales may differ in dtype too
    windows = [r for *_, r in scales]
    got = ops.nn_search([q.to(device) for q in qs], [bk.to(device) for bk in banks], index.to(device), windows,
                        impl="native")
    assert isinstance(got, list) and len(got) == len(scales)
    for out, q, bk, r in zip(got, qs, banks, windows):
        assert_close(out, reference(q, bk, index, r), atol=1e-5, rtol=0)


def test_numpy_path_equals_torch_path():
    q, bank, index = _inputs(2, 8, 6, 7, 3, 4, seed=3)
    from cpr_engine import _C

    outs = _C.nn_search([(q.numpy(), bank.numpy(), 3)], index.numpy())
    assert isinstance(outs[0], np.ndarray) and outs[0].dtype == np.float32
    np.testing.assert_array_equal(outs[0], ops.nn_search(q, bank, index, 3, impl="native").numpy())
    np.testing.assert_array_equal(ops.nn_search(q.numpy(), bank.numpy(), index.numpy(), 3), outs[0])


def test_channels_last_query_and_shifted_copy():
    g = torch.Generator().manual_seed(0)
    bank = unit_descriptors((1, 8, 6, 6), g)
    q = torch.roll(bank, shifts=1, dims=3).contiguous(memory_format=torch.channels_last)
    index = torch.zeros(1, 1, dtype=torch.long)
    assert ops.nn_search(q, bank, index, 3, impl="native")[0, :, 1:].abs().max() < 1e-6  # offset -1
    assert ops.nn_search(q, bank, index, 1, impl="native")[0, :, 1:].min() > 1e-3       # r = 1 misses


def test_half_conversion_exact_for_every_half_value():
    """bank values = all 65536 float16 bit patterns (NaNs aside), query = 1: out = 1 - value."""
    from cpr_engine import _C

    vals = np.arange(65536, dtype=np.uint16).view(np.float16)
    vals = vals[~np.isnan(vals)]
    bank = vals.reshape(1, 1, 1, -1)
    q = np.ones(bank.shape, np.float32)
    out = _C.nn_search([(q, bank, 1)], np.zeros((1, 1), np.int64))[0]
    np.testing.assert_array_equal(out[0, 0], (1 - vals.astype(np.float32)))


# ---- errors: every message names op, argument, expected form and what was received ----------
Q = np.zeros((1, 4, 5, 5), np.float32)
BANK = np.zeros((2, 4, 5, 5), np.float32)
IX = np.zeros((1, 1), np.int64)


@pytest.mark.parametrize("scales,index,err,match", [
    ([(Q, np.zeros((2, 4, 5), np.float32), 3)], IX, ValueError,
     r"^nn_search: bank must be \(N, 4, 5, 5\) float32\|float16, C-contiguous to match query \(1, 4, 5, 5\); "
     r"got \(2, 4, 5\) float32$"),
    ([(Q, BANK.astype(np.float64), 3)], IX, ValueError, r"bank must be .* float32\|float16.*got \(2, 4, 5, 5\) float64"),
    ([(Q, BANK.transpose(0, 1, 3, 2), 3)], IX, ValueError, r"bank must be .*C-contiguous.*not C-contiguous"),
    ([(Q.astype(np.float16), BANK, 3)], IX, ValueError, r"query must be \(B, D, H, W\) float32.*got \(1, 4, 5, 5\) float16"),
    ([(Q, BANK, 3)], np.zeros((2, 1), np.int64), ValueError, r"index must be \(1, K\) int64.*got \(2, 1\) int64"),
    ([(Q, BANK, 3)], np.zeros((1, 1), np.int32), ValueError, r"index must be \(1, K\) int64.*got \(1, 1\) int32"),
    ([(Q, BANK, 3)], np.zeros((1, 0), np.int64), ValueError, r"index must be \(B, K\) with K >= 1; got \(1, 0\)"),
    ([(Q, BANK, 2)], IX, ValueError, r"nn_search: scales\[0\]: window must be odd and >= 1; got 2"),
    ([(Q, BANK, 3)], np.array([[0, 2]]), IndexError, r"nn_search: index values must be in \[0, 2\); got \[0, 2\]"),
    ([(Q, BANK, 3)], np.array([[-1]]), IndexError, r"index values must be in \[0, 2\); got \[-1, -1\]"),
    ([(Q, BANK, 3), (Q, BANK[:, :3], 1)], IX, ValueError, r"scales\[1\]\.bank must be \(N, 4, 5, 5\)"),
    ([(Q, BANK.tolist(), 3)], IX, TypeError, r"bank must be .*numpy.ndarray.*got list"),
    ([(Q, BANK)], IX, TypeError, r"nn_search: scales\[0\] must be a \(query, bank, window\) tuple"),
    ([], IX, ValueError, r"scales must hold at least one scale; got 0"),
])
def test_errors(scales, index, err, match):
    from cpr_engine import _C

    with pytest.raises(err, match=match):
        _C.nn_search(scales, index)


def test_dispatcher_errors():
    q, bank, index = torch.zeros(1, 4, 5, 5), torch.zeros(2, 4, 5, 5), torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"bank must be float32\|float16\|int64 .*got \(2, 4, 5, 5\) bfloat16"):
        ops.nn_search(q, bank.bfloat16(), index, 3, impl="native")
    with pytest.raises(ValueError, match=r"bank must be .*got \(2, 4, 5, 5\) float64"):
        ops.nn_search(q, bank.double(), index, 3, impl="native")  # a float64 bank is never copied
    with pytest.raises(ValueError, match="same number"):
        ops.nn_search([q, q], [bank], index, [3, 1], impl="native")
    with pytest.raises(TypeError, match="NumPy arrays, CPU tensors or CUDA tensors"):
        ops.nn_search(q.numpy(), bank, index, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_unchecked_index(device):
    """check_index=False: on CUDA no host check (no sync) and NaN for an image with an out-of-range
    row, the other images unchanged; on CPU the check runs anyway."""
    q, bank, index = _inputs(2, 4, 5, 6, 3, 2, seed=11)
    want = reference(q, bank, index, 3)
    bad = index.clone()
    bad[1, 1] = 3
    args = (q.to(device), bank.to(device))
    assert_close(ops.nn_search(*args, index.to(device), 3, impl="native", check_index=False), want, atol=1e-5, rtol=0)
    with pytest.raises(IndexError, match=r"index values must be in \[0, 3\)"):
        ops.nn_search(*args, bad.to(device), 3, impl="native")
    if device == "cpu":
        with pytest.raises(IndexError, match=r"index values must be in \[0, 3\)"):
            ops.nn_search(*args, bad, 3, impl="native", check_index=False)
        return
    got = ops.nn_search(*args, bad.to(device), 3, impl="native", check_index=False).cpu()
    assert_close(got[0], want[0], atol=1e-5, rtol=0)
    assert torch.isnan(got[1]).all()


# whole-map windows (r // 2 >= max(H, W) - 1) run as matrix products on the CPU: awkward sizes,
# K > N (repeated references), a window exactly at the bound and one above it, fp16 banks, NumPy in;
# the last case is large enough for several blocks of 165 query rows spread over the threads, the last short
WHOLE_MAP_CASES = [  # b, d, h, w, n, k, r
    (1, 3, 1, 1, 1, 1, 1), (2, 5, 7, 3, 4, 6, 13), (3, 40, 9, 11, 5, 3, 21), (1, 112, 4, 4, 2, 2, 99),
    (2, 17, 13, 1, 3, 2, 25), (1, 6, 7, 5, 2, 2, 13), (2, 48, 23, 23, 4, 3, 45)]


def _covers_map(r, h, w):
    return r // 2 >= max(h, w) - 1


@pytest.mark.parametrize("b,d,h,w,n,k,r", WHOLE_MAP_CASES)
@pytest.mark.parametrize("half", [False, True])
def test_whole_map_window_equals_reference(b, d, h, w, n, k, r, half):
    assert _covers_map(r, h, w)
    q, bank, index = _inputs(b, d, h, w, n, k, seed=11 * h + w)
    bank = bank.half() if half else bank
    want = reference(q, bank, index, r)
    got = ops.nn_search(q, bank, index, r, impl="native")
    assert got.dtype == torch.float32 and got.shape == (b, h, w)
    assert_close(got, want, atol=1e-5, rtol=0)
    got_np = ops.nn_search(q.numpy(), bank.numpy(), index.numpy(), r, impl="native")
    assert isinstance(got_np, np.ndarray) and np.allclose(got_np, want.numpy(), atol=1e-5, rtol=0)


def test_whole_map_and_windowed_scales_in_one_call_and_bad_index():
    q, bank, index = _inputs(2, 8, 6, 6, 4, 3, seed=5)
    q2, bank2, _ = _inputs(2, 8, 3, 3, 4, 3, seed=6)
    assert not _covers_map(9, 6, 6) and _covers_map(11, 6, 6)
    got = ops.nn_search([q, q2], [bank, bank2], index, [3, 5], impl="native")
    for out, qq, bb, r in zip(got, [q, q2], [bank, bank2], [3, 5]):
        assert_close(out, reference(qq, bb, index, r), atol=1e-5, rtol=0)
    with pytest.raises(IndexError, match="index values must be in"):
        ops.nn_search(q2.numpy(), bank2.numpy(), np.full((2, 3), 4), 5, impl="native")
