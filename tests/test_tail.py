"""The scoring tail: the native one (csrc/tail, what tail.score runs on NumPy arrays and cpr::Detector runs)
against cpr_engine/tail.py's composition of the ops, native and PyTorch reference."""
import dataclasses
import os

import numpy as np
import pytest
import torch

from cpr_engine import ops, tail
from cpr_engine.contract import RuntimeSettings

SETTINGS = RuntimeSettings(image_size=32, strides=(4, 8), top_k=2, windows=(3, 1), kept_blocks=3, grid=2,
                           blur_sigma=1.0, top_t=10, use_foreground=True, threshold=1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _case(fine: int, dim: int, n_memory: tuple[int, int], seed: int = 0):
    """A random training state of 5 images and a batch of 3 queries: D = ``dim``, C = 5, 3 codes, grid 2 over
    ``fine`` x ``fine`` fine maps (coarse: half, rounded up), a memory of ``n_memory`` maps per scale."""
    rng = np.random.default_rng(seed)
    coarse = (fine + 1) // 2
    hists = rng.dirichlet(np.ones(4), size=(5, 4)).astype(np.float32)
    state = tail.TailState(rng.normal(size=(3, 5)).astype(np.float32), hists,
                           [_unit(rng.normal(size=(5, dim, fine, fine))), _unit(rng.normal(size=(5, dim, coarse, coarse)))],
                           rng.random((5, fine, fine), dtype=np.float32),
                           [_unit(rng.normal(size=(n_memory[0], dim, fine, fine))),
                            _unit(rng.normal(size=(n_memory[1], dim, coarse, coarse)))],
                           [np.arange(n_memory[0])[None], np.arange(n_memory[1])[None]],
                           (rng.random((fine, fine)) - 0.3).astype(np.float32),
                           [rng.integers(0, 5, size=(n_memory[0], fine, fine)),
                            rng.integers(0, 5, size=(n_memory[1], coarse, coarse))])
    query = ([_unit(rng.normal(size=(3, dim, fine, fine))), _unit(rng.normal(size=(3, dim, coarse, coarse)))],
             rng.normal(size=(3, 5, fine, fine)).astype(np.float32), rng.random((3, fine, fine), dtype=np.float32))
    return state, query


@pytest.fixture
def case():
    """Awkward small sizes: D = 7, 8 x 8 fine and 4 x 4 coarse maps, a memory of 2 fine and 3 coarse maps."""
    return _case(fine=8, dim=7, n_memory=(2, 3))


def _torch(x):
    return [torch.from_numpy(v) for v in x] if isinstance(x, list) else torch.from_numpy(x)


def _whole_search(descs: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """(B, D, h, w) queries, (P, D) patches -> (B, h, w) 1 - max cosine over every patch (position-free)."""
    b, d, h, w = descs.shape
    sims = descs.transpose(0, 2, 3, 1).reshape(-1, d) @ patches.T
    return (1 - sims.max(1)).reshape(b, h, w)


def _patches(memory: np.ndarray) -> np.ndarray:
    return memory.transpose(0, 2, 3, 1).reshape(-1, memory.shape[1])


def test_tail_equals_the_ops_composed_by_hand(case):
    state, (descs, features, fg) = case
    maps, scores = tail.score(descs, features, fg, state, SETTINGS)
    hists = ops.codebook_histogram(features, state.centers, 2)[1]
    index = ops.top_k(ops.hist_match(hists, state.train_hists, 3), 2)
    near = ops.nn_search(descs, state.banks, index, [3, 1])
    local = [np.minimum(n, _whole_search(d, _patches(m))) for n, d, m in zip(near, descs, state.memories)]
    assert all((n > l).any() for n, l in zip(near, local)), "the memory never won: the case does not test it"
    offset = local[0] - state.location_offset
    assert (offset < 0).any() and (offset > 0).any(), "the offset's clamp at 0 is not exercised"
    local[0] = np.maximum(offset, 0)
    weight = np.maximum(fg, state.bank_fg[index].max(axis=1))
    want_maps, want_scores = ops.postprocess(local, weight, 32, 1.0, 10)
    np.testing.assert_array_equal(maps, want_maps)
    np.testing.assert_array_equal(scores, want_scores)
    assert maps.shape == (3, 32, 32) and scores.shape == (3,)


def test_foreground_on_the_image_score_only(case):
    """foreground_on_map False: the maps of the unweighted tail and the scores of the weighted one."""
    state, (descs, features, fg) = case
    score_only = dataclasses.replace(SETTINGS, foreground_on_map=False)
    maps, scores = tail.score(descs, features, fg, state, score_only)
    weighted_maps, weighted_scores = tail.score(descs, features, fg, state, SETTINGS)
    plain_maps, plain_scores = tail.score(descs, features, None, state, SETTINGS)
    np.testing.assert_array_equal(maps, plain_maps)
    np.testing.assert_array_equal(scores, weighted_scores)
    assert not np.array_equal(maps, weighted_maps) and not np.array_equal(scores, plain_scores), \
        "the foreground changes nothing here: the case does not test the mode"
    # without a foreground the setting changes nothing
    for got, want in zip(tail.score(descs, features, None, state, score_only), (plain_maps, plain_scores)):
        np.testing.assert_array_equal(got, want)


def test_numpy_and_torch_take_the_same_path(case):
    state, (descs, features, fg) = case
    torch_state = tail.TailState(*(_torch(part) for part in state))
    score_only = dataclasses.replace(SETTINGS, foreground_on_map=False)
    for foreground, settings in ((fg, SETTINGS), (None, SETTINGS), (fg, score_only)):
        maps, scores = tail.score(descs, features, foreground, state, settings)
        t_maps, t_scores = tail.score(_torch(descs), _torch(features), None if foreground is None else _torch(foreground),
                                      torch_state, settings)
        np.testing.assert_allclose(t_maps.numpy(), maps, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t_scores.numpy(), scores, rtol=1e-5)


def test_map_weight_offset_and_exclusion(case):
    state, (descs, features, fg) = case
    index = tail.retrieve(features, state, SETTINGS)
    weight = tail.map_weight(fg, index, state)
    assert (weight >= fg).all() and (weight >= state.bank_fg[index[:, 0]]).all()
    assert tail.map_weight(None, index, state) is None
    local = [np.full((3, 8, 8), 0.4, np.float32), np.full((3, 4, 4), np.nan, np.float32)]
    local[0][1, 2, 3] = np.nan
    fine, coarse = tail.offset_locations(local, state)
    want = np.maximum(0.4 - state.location_offset, 0)
    np.testing.assert_array_equal(np.delete(fine.reshape(3, -1), 1 * 64 + 2 * 8 + 3), np.delete(
        np.broadcast_to(want, (3, 8, 8)).reshape(3, -1), 1 * 64 + 2 * 8 + 3))
    assert np.isnan(fine[1, 2, 3]) and coarse is local[1], "NaN must stay NaN; the coarse scale is untouched"
    torch_fine = tail.offset_locations([torch.from_numpy(v) for v in local], tail.TailState(*(
        _torch(part) for part in state)))[0]
    np.testing.assert_array_equal(torch_fine.numpy(), fine)
    exclude = index[:, 0].copy()
    assert not (tail.retrieve(features, state, SETTINGS, exclude=exclude) == exclude[:, None]).any()


def test_excluded_image_leaves_the_memory(case):
    """Leave-one-out scoring: the excluded training image's memory patches never match (cosine 0 at best)."""
    state, (descs, features, _) = case
    torch_state = tail.TailState(*(_torch(part) for part in state[:-1]), _torch(state.memory_sources))
    exclude = np.array([0, 3, 4])
    index = tail.retrieve(features, state, SETTINGS, exclude=exclude)
    got = tail.local_search(_torch(descs), torch.from_numpy(index), torch_state, SETTINGS,
                            exclude=torch.from_numpy(exclude))
    near = ops.nn_search(descs, state.banks, index, [3, 1])
    for scale, (d, memory, sources) in enumerate(zip(descs, state.memories, state.memory_sources)):
        for b, e in enumerate(exclude):
            kept = _patches(memory)[(sources != e).reshape(-1)]
            assert len(kept) < memory.shape[0] * memory.shape[2] * memory.shape[3], "nothing excluded"
            want = np.minimum(np.minimum(near[scale][b], _whole_search(d[b:b + 1], kept)[0]), 1.0)
            np.testing.assert_allclose(got[scale][b].numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="memory's sources"):
        tail.local_search(descs, index, state._replace(memory_sources=None), SETTINGS, exclude=exclude)


def _native(descs, features, foreground, state, settings, exclude=None):
    """The native tail (``ops.score_tail``) on a tail state and settings (leave-one-out with ``exclude``)."""
    return ops.score_tail(descs, features, foreground, state, settings, exclude)


def test_numpy_scoring_is_one_native_call(case, monkeypatch):
    """tail.score on NumPy arrays is the native tail when it has its BLAS (CI builds it with one), else the stages."""
    state, (descs, features, fg) = case
    native, calls = ops.score_tail, []

    def counted(*args, **kwargs):
        calls.append(args)
        return native(*args, **kwargs)

    monkeypatch.setattr(ops, "score_tail", counted)
    tail.score(descs, features, fg, state, SETTINGS)
    assert len(calls) == (1 if ops.native_tail_fast() else 0)
    if os.environ.get("CPR_REQUIRE_NATIVE") == "1":
        assert ops.native_tail_fast(), "CPR_REQUIRE_NATIVE=1: _C was built without a BLAS for its scoring tail"


@pytest.mark.parametrize("exclude", [None, np.array([0, 3, 4])], ids=["all", "leave-one-out"])
@pytest.mark.parametrize("bank_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("windows", [(3, 1), (15, 7)], ids=["windowed", "whole-map"])
def test_native_tail_equals_the_reference(case, bank_dtype, windows, exclude):
    """The native tail against the PyTorch reference composition, fp32 and fp16 banks and memories, windows
    that do not and that do cover the map (the latter run as matrix products), every foreground mode, and
    leave-one-out scoring (each query's own image out of retrieval and memory)."""
    if exclude is not None and not ops.native_tail_fast():
        pytest.skip("leave-one-out in the native tail needs its BLAS")
    state, (descs, features, fg) = case
    state = state._replace(banks=[b.astype(bank_dtype) for b in state.banks],
                           memories=[m.astype(bank_dtype) for m in state.memories])
    torch_state = tail.TailState(*(_torch(part) for part in state))
    for foreground, on_map in ((fg, True), (fg, False), (None, True)):
        settings = dataclasses.replace(SETTINGS, windows=windows, foreground_on_map=on_map)
        maps, scores = _native(descs, features, foreground, state, settings, exclude)
        want_maps, want_scores = tail.score(_torch(descs), _torch(features),
                                            None if foreground is None else _torch(foreground), torch_state,
                                            settings, None if exclude is None else _torch(exclude), impl="reference")
        np.testing.assert_allclose(maps, want_maps.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores, want_scores.numpy(), rtol=1e-4)


@pytest.mark.parametrize("exclude", [None, np.array([4, 0, 2])], ids=["all", "leave-one-out"])
def test_native_tail_equals_the_reference_with_searches_split_over_threads(exclude):
    """Maps large enough that the whole-map searches (memory and K images) run as several blocks of query
    rows spread over the OpenMP threads, the last block short: 23 x 23 fine maps, D = 48, a memory of 3 maps
    (529 x 1587 x 48 multiply-adds per query, blocks of 165 rows)."""
    if not ops.native_tail_fast():
        pytest.skip("the whole-map searches run as matrix products only with the native tail's BLAS")
    state, (descs, features, fg) = _case(fine=23, dim=48, n_memory=(3, 2), seed=1)
    settings = dataclasses.replace(SETTINGS, image_size=92, windows=(45, 23))
    torch_state = tail.TailState(*(_torch(part) for part in state))
    maps, scores = _native(descs, features, fg, state, settings, exclude)
    want_maps, want_scores = tail.score(_torch(descs), _torch(features), _torch(fg), torch_state, settings,
                                        None if exclude is None else _torch(exclude), impl="reference")
    np.testing.assert_allclose(maps, want_maps.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores, want_scores.numpy(), rtol=1e-4)


def test_native_tail_names_bad_input(case):
    state, (descs, features, fg) = case
    with pytest.raises(ValueError, match="score_tail: descriptors\\[1\\] must be \\(3, D, h, h\\)"):
        _native([descs[0], descs[1][:2]], features, fg, state, SETTINGS)
    with pytest.raises(ValueError, match="score_tail: memories\\[0\\] must be \\(M, 7, 8, 8\\)"):
        _native(descs, features, fg, state._replace(memories=[state.memories[0][:, :5], state.memories[1]]),
                SETTINGS)
    with pytest.raises(ValueError, match="score_tail: foreground must be"):
        _native(descs, features, fg[:, :4], state, SETTINGS)
    with pytest.raises(TypeError, match="score_tail: bank_fg"):
        _native(descs, features, fg, state._replace(bank_fg=None), SETTINGS)
    empty = _native([d[:0] for d in descs], features[:0], fg[:0], state, SETTINGS)
    assert empty[0].shape == (0, 32, 32) and empty[1].shape == (0,)
    exclude = np.array([0, 3, 4])
    with pytest.raises(ValueError, match="score_tail: exclude needs memory_sources"):
        _native(descs, features, fg, state._replace(memory_sources=None), SETTINGS, exclude)
    with pytest.raises(ValueError, match="score_tail: memory_sources\\[1\\] must be \\(3, 4, 4\\) int64"):
        _native(descs, features, fg, state._replace(memory_sources=[state.memory_sources[0],
                                                                    state.memory_sources[1][:2]]), SETTINGS, exclude)
    with pytest.raises(ValueError, match="score_tail: exclude must be \\(3,\\) int64"):
        _native(descs, features, fg, state, SETTINGS, exclude[:2])
    with pytest.raises(IndexError, match="top_k"):
        _native(descs, features, fg, state, SETTINGS, np.array([0, 3, 5]))


def test_leave_one_out_on_cpu_tensors_is_one_native_call(case, monkeypatch):
    """Training's leave-one-out scoring (CPU tensors, a state with the memory's sources) runs the native tail."""
    state, (descs, features, fg) = case
    torch_state = tail.TailState(*(_torch(part) for part in state))
    native, calls = ops.score_tail, []
    monkeypatch.setattr(ops, "score_tail", lambda *a, **k: calls.append(a) or native(*a, **k))
    exclude = torch.tensor([0, 3, 4])
    maps, scores = tail.score(_torch(descs), _torch(features), _torch(fg), torch_state, SETTINGS, exclude)
    assert len(calls) == (1 if ops.native_tail_fast() else 0)
    want_maps, want_scores = tail.score(_torch(descs), _torch(features), _torch(fg), torch_state, SETTINGS, exclude,
                                        impl="reference")
    np.testing.assert_allclose(maps.numpy(), want_maps.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), want_scores.numpy(), rtol=1e-4)


_cuda = pytest.mark.skipif(not (ops.cuda_available() and torch.cuda.is_available()),
                           reason="needs a CUDA GPU and cpr_engine._C built with CUDA")


@pytest.mark.needs_cuda
@_cuda
@pytest.mark.parametrize("bank_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("windows", [(3, 1), (15, 7), (5, 3)], ids=["windowed", "whole-map", "wider"])
def test_cuda_tail_equals_the_reference_and_the_cpu_tail(bank_dtype, windows):
    """The native tail on CUDA tensors (one call, on the current stream) against the PyTorch reference composition
    on the same tensors and against the native CPU tail: fp32 and fp16 banks and memories, every foreground mode,
    awkward sizes (9 x 9 fine maps, D = 7, memories of 2 and 3 maps)."""
    state, (descs, features, fg) = _case(fine=9, dim=7, n_memory=(2, 3), seed=2)
    state = state._replace(banks=[b.astype(bank_dtype) for b in state.banks],
                           memories=[m.astype(bank_dtype) for m in state.memories])
    gpu_state = tail.TailState(*(None if part is None else
                                 [torch.from_numpy(v).cuda() for v in part] if isinstance(part, list) else
                                 torch.from_numpy(part).cuda() for part in state))
    gpu = [[torch.from_numpy(d).cuda() for d in descs], torch.from_numpy(features).cuda(), torch.from_numpy(fg).cuda()]
    for foreground, on_map in ((True, True), (True, False), (False, True)):
        settings = dataclasses.replace(SETTINGS, image_size=36, windows=windows, foreground_on_map=on_map)
        maps, scores = _native(gpu[0], gpu[1], gpu[2] if foreground else None, gpu_state, settings)
        assert maps.is_cuda and scores.is_cuda and maps.shape == (3, 36, 36)
        want_maps, want_scores = tail.score(gpu[0], gpu[1], gpu[2] if foreground else None, gpu_state, settings,
                                            impl="reference")
        torch.testing.assert_close(maps, want_maps, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(scores, want_scores, rtol=1e-4, atol=1e-5)
        cpu_maps, cpu_scores = _native(descs, features, fg if foreground else None, state, settings)
        np.testing.assert_allclose(maps.cpu().numpy(), cpu_maps, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores.cpu().numpy(), cpu_scores, rtol=1e-4)


@pytest.mark.needs_cuda
@_cuda
def test_cuda_scoring_is_one_native_call_and_leave_one_out_is_not(monkeypatch):
    """tail.score on CUDA tensors is one call into the native tail; leave-one-out there runs the stages, and
    ops.score_tail refuses exclude on CUDA."""
    state, (descs, features, fg) = _case(fine=8, dim=7, n_memory=(2, 3))
    gpu_state = tail.TailState(*([torch.from_numpy(v).cuda() for v in part] if isinstance(part, list) else
                                 torch.from_numpy(part).cuda() for part in state))
    gpu = [[torch.from_numpy(d).cuda() for d in descs], torch.from_numpy(features).cuda(), torch.from_numpy(fg).cuda()]
    native, calls = ops.score_tail, []
    monkeypatch.setattr(ops, "score_tail", lambda *a, **k: calls.append(a) or native(*a, **k))
    tail.score(*gpu, gpu_state, SETTINGS)
    assert len(calls) == 1
    tail.score(*gpu, gpu_state, SETTINGS, exclude=torch.tensor([0, 3, 4], device="cuda"))
    assert len(calls) == 1
    with pytest.raises(ValueError, match="score_tail: exclude .* CPU only"):
        native(*gpu, gpu_state, SETTINGS, exclude=torch.tensor([0, 3, 4], device="cuda"))


@pytest.mark.skipif(not ops.native_available(), reason="cpr_engine._C is not built")
def test_native_tail_routing_by_device(case, monkeypatch):
    """Which inputs ``tail.score`` sends to the native tail: CUDA tensors when the CUDA kernels are built,
    except for leave-one-out (CPU only); NumPy arrays and CPU tensors when the tail has its BLAS; never
    inputs that require grad or a forced reference. (The device is faked: only the choice is tested.)"""
    _, (descs, features, fg) = case
    tensors = [torch.from_numpy(features), torch.from_numpy(fg)]
    monkeypatch.setattr(ops, "_kind", lambda op, arrays: "cuda")
    for built in (True, False):
        monkeypatch.setattr(ops, "cuda_available", lambda built=built: built)
        assert ops.native_tail_for(None, tensors) is built
        assert ops.native_tail_for(None, tensors, leave_one_out=True) is False
        assert ops.native_tail_for("reference", tensors) is False
        assert ops.native_tail_for(None, [tensors[0].requires_grad_(), tensors[1]]) is False
        tensors[0] = tensors[0].detach()
    monkeypatch.undo()
    assert ops.native_tail_for(None, [features, fg]) is ops.native_tail_fast()
    assert ops.native_tail_for(None, [features, fg], leave_one_out=True) is ops.native_tail_fast()


@pytest.mark.skipif(not ops.cuda_available(), reason="cpr_engine._C built without CUDA")
def test_cuda_tail_binding_names_bad_input(case):
    """``_C.cuda.score_tail`` checks every device buffer's shape and dtype before it touches the device, with
    the host binding's messages (no GPU needed: the bad buffers are refused first)."""
    from cpr_engine import _C

    state, (descs, features, fg) = case

    def dev(a, shape=None):  # a device-buffer descriptor with a fake pointer: only its shape and dtype are read
        return (0x1000, tuple(a.shape if shape is None else shape), str(a.dtype), True)

    def call(state_changes=(), **changes):
        args = dict(descriptors=[dev(d) for d in descs], features=dev(features), foreground=dev(fg),
                    state=tail.TailState(*(None if part is None else [dev(v) for v in part] if isinstance(part, list)
                                           else dev(part) for part in state))._replace(**dict(state_changes)),
                    settings=SETTINGS, anomaly_map=(0x1000, (3, 32, 32), "float32", True),
                    score=(0x1000, (3,), "float32", True), stream=0)
        args.update(changes)
        _C.cuda.score_tail(**args)

    with pytest.raises(ValueError, match="score_tail: descriptors\\[1\\] must be \\(3, D, h, h\\)"):
        call(descriptors=[dev(descs[0]), dev(descs[1], (2, 7, 4, 4))])
    with pytest.raises(ValueError, match="score_tail: memories\\[0\\] must be \\(M, 7, 8, 8\\)"):
        call(state_changes={"memories": [dev(state.memories[0], (2, 5, 8, 8)), dev(state.memories[1])]})
    with pytest.raises(ValueError, match="score_tail: anomaly_map must be \\(3, 32, 32\\) float32"):
        call(anomaly_map=(0x1000, (3, 16, 16), "float32", True))
    with pytest.raises(ValueError, match="score_tail: location_offset must be .*not C-contiguous"):
        call(state_changes={"location_offset": (0x1000, (8, 8), "float32", False)})
    with pytest.raises(ValueError, match="score_tail: score must be \\(3,\\) float32"):
        call(score=(0x1000, (3,), "float16", True))


@pytest.mark.skipif(not ops.native_available(), reason="cpr_engine._C is not built")
def test_cuda_tail_call_passes_every_buffer(case, monkeypatch):
    """``ops.score_tail``'s CUDA path hands ``_C.cuda.score_tail`` a descriptor of every tensor (its own data
    pointer, shape, dtype), per-image arrays made contiguous, outputs allocated on the inputs' device, the
    settings whole and the current stream. (No GPU here: the device is faked and the native call recorded.)"""
    state, (descs, features, fg) = case
    torch_state = tail.TailState(*(_torch(part) for part in state))
    strided = torch.from_numpy(descs[0]).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last
    coarse, query_features, query_fg = torch.from_numpy(descs[1]), torch.from_numpy(features), torch.from_numpy(fg)
    calls = []

    class FakeCuda:
        @staticmethod
        def score_tail(*args):
            calls.append(args)

    monkeypatch.setattr(ops, "_kind", lambda op, arrays: "cuda")
    monkeypatch.setattr(ops, "cuda_available", lambda: True)
    monkeypatch.setattr(ops, "_stream", lambda device: 1234)
    monkeypatch.setattr(ops, "_C", type("FakeC", (), {"cuda": FakeCuda}))
    monkeypatch.setattr(ops, "_logged", True)
    monkeypatch.setattr(torch.cuda, "device", lambda device: __import__("contextlib").nullcontext())
    maps, scores = ops.score_tail([strided, coarse], query_features, query_fg, torch_state, SETTINGS)
    assert maps.shape == (3, 32, 32) and scores.shape == (3,) and maps.dtype == scores.dtype == torch.float32
    (descriptors, feat, foreground, passed_state, settings, amap, score, stream), = calls
    assert settings is SETTINGS and stream == 1234
    assert descriptors[0][1:] == ((3, 7, 8, 8), "float32", True) and descriptors[0][0] != strided.data_ptr()
    for got, t in ((descriptors[1], coarse), (feat, query_features), (foreground, query_fg)):
        assert got == (t.data_ptr(), tuple(t.shape), "float32", True)
    for name, value in torch_state._asdict().items():
        got = getattr(passed_state, name)
        for t, d in zip(value if isinstance(value, list) else [value], got if isinstance(got, list) else [got]):
            assert d == (t.data_ptr(), tuple(t.shape), str(t.dtype).replace("torch.", ""), True), name
    assert amap == (maps.data_ptr(), (3, 32, 32), "float32", True) and score == (scores.data_ptr(), (3,), "float32", True)
    with pytest.raises(ValueError, match="exclude .* CPU only"):
        ops.score_tail([strided, coarse], query_features, None, torch_state, SETTINGS, exclude=torch.tensor([0, 1, 2]))
