"""pytest-benchmark: native kernels vs the PyTorch reference, per op, on the same inputs.

    python -m pytest benchmarks/bench_ops.py --benchmark-group-by=group    # not part of `pytest tests/`

Inputs come from benchmarks/run_ops.py (the CPR configuration: one 320 px image, N = 30 training
images). CPU tensors in and out; times include the zero-copy views and output allocation.
"""
import pytest
import torch

from benchmarks.run_ops import (codebook_histogram_case, hist_match_case, nn_search_case, postprocess_case,
                                top_k_case)
from cpr_engine import ops

pytestmark = pytest.mark.skipif(not ops.native_available(), reason=f"cpr_engine._C is not built: {ops.native_error()}")

IMPLS = ["reference", "native"]


def _run(benchmark, fn, kwargs, impl, group, slow_reference=False):
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    with torch.no_grad():
        if impl == "reference" and slow_reference:
            benchmark.pedantic(fn, kwargs={**kwargs, "impl": impl}, rounds=3, iterations=1, warmup_rounds=1)
        else:
            benchmark(fn, **kwargs, impl=impl)


@pytest.fixture(scope="module")
def nn_cpr():
    return nn_search_case("cpr", 30)


@pytest.mark.parametrize("impl", IMPLS)
def test_nn_search_cpr(benchmark, nn_cpr, impl):
    _run(benchmark, ops.nn_search, nn_cpr[1], impl, "nn_search cpr", slow_reference=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_nn_search_cpr_fp16(benchmark, impl):
    _run(benchmark, ops.nn_search, nn_search_case("cpr", 30, torch.float16)[1], impl, "nn_search cpr fp16",
         slow_reference=True)


@pytest.mark.parametrize("variant", ["fast", "faster"])
@pytest.mark.parametrize("impl", IMPLS)
def test_nn_search_variants(benchmark, variant, impl):
    _run(benchmark, ops.nn_search, nn_search_case(variant, 30)[1], impl, f"nn_search {variant}")


@pytest.mark.parametrize("impl", IMPLS)
def test_hist_match(benchmark, impl):
    _run(benchmark, ops.hist_match, hist_match_case(1000)[1], impl, "hist_match B=1 N=1000")


@pytest.mark.parametrize("impl", IMPLS)
def test_top_k(benchmark, impl):
    _run(benchmark, ops.top_k, top_k_case(1000)[1], impl, "top_k N=1000 k=10")


@pytest.mark.parametrize("impl", IMPLS)
def test_codebook_histogram(benchmark, impl):
    _run(benchmark, ops.codebook_histogram, codebook_histogram_case(24)[1], impl, "codebook_histogram C=24")


@pytest.mark.parametrize("impl", IMPLS)
def test_postprocess(benchmark, impl):
    _run(benchmark, ops.postprocess, postprocess_case()[1], impl, "postprocess 320")
