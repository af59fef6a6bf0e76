"""cpr_engine.ops: choice of implementation, logging, torch-free NumPy path, the CI build check."""
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cpr_engine.reference
from cpr_engine import ops
from tests.helpers.cases import random_hists
from tests.ops.common import needs_native


def test_native_extension_is_built():
    """CI builds the extension and sets CPR_REQUIRE_NATIVE=1: then a missing _C is a failure."""
    if os.environ.get("CPR_REQUIRE_NATIVE") == "1":
        assert ops.native_available(), f"CPR_REQUIRE_NATIVE=1 but cpr_engine._C is missing: {ops.native_error()}"
    elif not ops.native_available():
        pytest.skip(f"cpr_engine._C is not built ({ops.native_error()}); set CPR_REQUIRE_NATIVE=1 to fail")
    from cpr_engine import _C

    assert isinstance(_C.WITH_CUDA, bool) and _C.cpu_isa() in ("avx2+fma", "portable")


@pytest.mark.parametrize("env,want", [("", "native"), ("auto", "native"), ("reference", "reference"),
                                      ("native", "native")])
def test_backend_and_env_var(monkeypatch, env, want):
    monkeypatch.setenv(ops.ENV_VAR, env)
    if not ops.native_available() and want == "native":
        want = "reference"
        if env == "native":
            with pytest.raises(RuntimeError, match="not built"):
                ops.backend()
            return
    assert ops.backend() == want


def test_bad_env_and_impl(monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=r"CPR_ENGINE_OPS must be 'native', 'reference' or 'auto'; got 'fast'"):
        ops.backend()
    monkeypatch.delenv(ops.ENV_VAR)
    with pytest.raises(ValueError, match=r"hist_match: impl must be 'native', 'reference' or None; got 'gpu'"):
        ops.hist_match(torch.zeros(1, 25, 13), torch.zeros(2, 25, 13), 20, impl="gpu")


def test_logs_choice_once(caplog, monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    monkeypatch.setattr(ops, "_logged", False)
    with caplog.at_level(logging.INFO, logger="cpr_engine.ops"):
        ops.backend()
        ops.backend()
        ops.top_k(torch.rand(1, 5), 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "cpr_engine.ops" and r.levelno == logging.INFO]
    if ops.native_available():
        want = f"cpr_engine.ops: using native C++ kernels (CUDA: {'yes' if ops.cuda_available() else 'no'})"
    else:
        want = messages[0] if messages and messages[0].startswith("cpr_engine.ops: using the PyTorch reference") else "?"
    assert messages == [want]


def _spy_reference(monkeypatch):
    calls = []
    original = cpr_engine.reference.nn_search  # the function ops.nn_search falls back to

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(cpr_engine.reference, "nn_search", spy)
    return calls


def _nn_inputs():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(1, 4, 5, 5, generator=g), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(3, 4, 5, 5, generator=g), dim=1)
    return q, bank, torch.tensor([[0, 2]])


def test_env_var_forces_reference(monkeypatch):
    calls = _spy_reference(monkeypatch)
    q, bank, index = _nn_inputs()
    monkeypatch.setenv(ops.ENV_VAR, "reference")
    ops.nn_search(q, bank, index, 3)
    assert calls == [1]
    ops.nn_search(q, bank, index, 3, impl="reference")
    assert calls == [1, 1]
    if ops.native_available():
        ops.nn_search(q, bank, index, 3, impl="native")  # an explicit impl wins over the variable
        assert calls == [1, 1]
        monkeypatch.delenv(ops.ENV_VAR)
        ops.nn_search(q, bank, index, 3)
        assert calls == [1, 1]


def test_inputs_that_require_grad_take_the_reference(monkeypatch):
    calls = _spy_reference(monkeypatch)
    q, bank, index = _nn_inputs()
    q.requires_grad_(True)
    out = ops.nn_search(q, bank, index, 3)
    assert calls == [1] and out.grad_fn is not None
    out.sum().backward()
    assert q.grad is not None
    with torch.no_grad():
        ops.nn_search(q, bank, index, 3)
    assert calls == ([1] if ops.native_available() else [1, 1])
    if ops.native_available():
        with pytest.raises(ValueError, match="inference-only"):
            ops.nn_search(q, bank, index, 3, impl="native")


def test_without_the_extension(monkeypatch):
    monkeypatch.setattr(ops, "_C", None)
    monkeypatch.setattr(ops, "_IMPORT_ERROR", ImportError("no _C here"))
    monkeypatch.setattr(ops, "_logged", True)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    assert ops.backend() == "reference" and not ops.native_available()
    q, bank, index = _nn_inputs()
    assert ops.nn_search(q, bank, index, 3).shape == (1, 5, 5)  # the reference runs
    with pytest.raises(RuntimeError, match=r"nn_search: impl='native' but cpr_engine._C is not built \(ImportError: no _C"):
        ops.nn_search(q, bank, index, 3, impl="native")
    with pytest.raises(RuntimeError, match="NumPy inputs need the native kernels"):
        ops.top_k(np.zeros((1, 3), np.float32), 1)


def test_mixed_and_unknown_inputs():
    with pytest.raises(TypeError, match=r"top_k: inputs must be numpy.ndarray or torch.Tensor; got list"):
        ops.top_k([[1.0, 2.0]], 1)
    with pytest.raises(TypeError, match=r"hist_match: inputs must all be NumPy arrays, CPU tensors or CUDA tensors"):
        ops.hist_match(np.zeros((1, 25, 13), np.float32), torch.zeros(2, 25, 13), 20)


@needs_native[1]
def test_reference_on_numpy_equals_native():
    rng = np.random.default_rng(0)
    q, r = random_hists(2, 25, 13, rng), random_hists(9, 25, 13, rng)
    ref = ops.hist_match(q, r, 20, impl="reference")
    assert isinstance(ref, np.ndarray)
    np.testing.assert_allclose(ops.hist_match(q, r, 20), ref, rtol=1e-5, atol=1e-5)
    d = ops.hist_match(q, r, 20)
    np.testing.assert_array_equal(ops.top_k(d, 3, np.array([0, 1])), ops.top_k(d, 3, np.array([0, 1]), impl="reference"))


@needs_native[1]
def test_numpy_path_never_imports_torch(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from cpr_engine import ops
        rng = np.random.default_rng(0)
        q = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
        bank = rng.standard_normal((3, 8, 6, 6)).astype(np.float16)
        out = ops.nn_search([q, q[:, :, :3, :3].copy()], [bank, bank[:, :, :3, :3].copy()], np.array([[0, 2]]), [3, 1])
        h = np.full((1, 25, 13), 1 / 13, np.float32)
        idx = ops.top_k(ops.hist_match(h, np.repeat(h, 4, 0), 20), 2)
        amap, score = ops.postprocess(out, None, 24, 2.0, 10)
        ids, hists = ops.codebook_histogram(q, q[0, :, 0, :3].T.copy(), 2)
        assert ops.backend() == "native"
        assert "torch" not in sys.modules, "the NumPy path imported torch"
        print("ok", amap.shape, bool(np.isfinite(score).all()))
    """)
    env = dict(os.environ)
    env.pop(ops.ENV_VAR, None)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok (1, 24, 24) True")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_tracing_and_export_take_the_reference(monkeypatch):
    calls = _spy_reference(monkeypatch)
    q, bank, index = _nn_inputs()

    def f(q):
        return ops.nn_search(q, bank, index, 3)

    traced = torch.jit.trace(f, (q,), check_trace=False)
    assert calls and torch.allclose(traced(q), ops.nn_search(q, bank, index, 3, impl="reference"))
    if ops.native_available():
        with pytest.raises(ValueError, match="cannot be traced"):
            torch.jit.trace(lambda q: ops.nn_search(q, bank, index, 3, impl="native"), (q,), check_trace=False)
