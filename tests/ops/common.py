"""Marks and helpers shared by the native-kernel tests (tests/ops/test_<op>.py)."""
import numpy as np
import pytest
import torch

from cpr_engine import ops

# Skips with the reason when the extension is not built (CI builds it and sets CPR_REQUIRE_NATIVE=1,
# which makes tests/ops/test_dispatch.py::test_native_extension_is_built fail instead).
needs_native = [
    pytest.mark.needs_native,
    pytest.mark.skipif(not ops.native_available(),
                       reason=f"cpr_engine._C is not built ({ops.native_error()}); `pip install -e .` builds it"),
]

_cuda_ok = ops.cuda_available() and torch.cuda.is_available()
needs_cuda = [
    pytest.mark.needs_cuda,
    pytest.mark.skipif(not _cuda_ok, reason="needs a CUDA GPU and cpr_engine._C built with CUDA"),
]

# device parameter: cpu always, cuda where a GPU and the CUDA kernels are present
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]

# CPU instruction-set copies of the hot loops: both run the same source (tests force each)
ISAS = ["auto", "portable"]


@pytest.fixture(params=ISAS)
def cpu_isa(request):
    """Run a test with the runtime-selected ISA copies and with the portable ones."""
    from cpr_engine import _C

    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa("auto")


def to_device(x, device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def assert_close(got, want, **tol):
    """allclose on tensors/arrays (moved to CPU NumPy), NaN == NaN."""
    g = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    w = want.detach().cpu().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert g.shape == w.shape, f"shape {g.shape} != {w.shape}"
    np.testing.assert_allclose(g, w, **tol)
