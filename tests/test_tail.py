"""The scoring tail (cpr_engine/tail.py): one code path for NumPy arrays and torch tensors."""
import numpy as np
import pytest
import torch

from cpr_engine import ops, tail
from cpr_engine.contract import RuntimeSettings

SETTINGS = RuntimeSettings(image_size=32, strides=(4, 8), top_k=2, windows=(3, 1), kept_blocks=3, grid=2,
                           blur_sigma=1.0, top_t=10, use_foreground=True, threshold=1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def case():
    """A random training state of 5 images and a batch of 3 queries, awkward sizes (D = 7, C = 5, M = 3,
    grid 2 over 8 x 8 fine maps)."""
    rng = np.random.default_rng(0)
    hists = rng.dirichlet(np.ones(4), size=(5, 4)).astype(np.float32)
    state = tail.TailState(rng.normal(size=(3, 5)).astype(np.float32), hists,
                           [_unit(rng.normal(size=(5, 7, 8, 8))), _unit(rng.normal(size=(5, 7, 4, 4)))],
                           rng.random((5, 8, 8), dtype=np.float32))
    query = ([_unit(rng.normal(size=(3, 7, 8, 8))), _unit(rng.normal(size=(3, 7, 4, 4)))],
             rng.normal(size=(3, 5, 8, 8)).astype(np.float32), rng.random((3, 8, 8), dtype=np.float32))
    return state, query


def _torch(x):
    return [torch.from_numpy(v) for v in x] if isinstance(x, list) else torch.from_numpy(x)


def test_tail_equals_the_ops_composed_by_hand(case):
    state, (descs, features, fg) = case
    maps, scores = tail.score(descs, features, fg, state, SETTINGS)
    hists = ops.codebook_histogram(features, state.centers, 2)[1]
    index = ops.top_k(ops.hist_match(hists, state.train_hists, 3), 2)
    local = ops.nn_search(descs, state.banks, index, [3, 1])
    want_maps, want_scores = ops.postprocess(local, np.maximum(fg, state.bank_fg[index].max(axis=1)), 32, 1.0, 10)
    np.testing.assert_array_equal(maps, want_maps)
    np.testing.assert_array_equal(scores, want_scores)
    assert maps.shape == (3, 32, 32) and scores.shape == (3,)


def test_numpy_and_torch_take_the_same_path(case):
    state, (descs, features, fg) = case
    torch_state = tail.TailState(*(_torch(part) for part in state))
    for foreground in (fg, None):
        maps, scores = tail.score(descs, features, foreground, state, SETTINGS)
        t_maps, t_scores = tail.score(_torch(descs), _torch(features), None if foreground is None else _torch(foreground),
                                      torch_state, SETTINGS)
        np.testing.assert_allclose(t_maps.numpy(), maps, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t_scores.numpy(), scores, rtol=1e-5)


def test_foreground_fusion_and_exclusion(case):
    state, (descs, features, fg) = case
    index = tail.retrieve(features, state, SETTINGS)
    fused = tail.fuse_foreground(fg, index, state)
    assert (fused >= fg).all() and (fused >= state.bank_fg[index[:, 0]]).all()
    assert tail.fuse_foreground(None, index, state) is None
    exclude = index[:, 0].copy()
    assert not (tail.retrieve(features, state, SETTINGS, exclude=exclude) == exclude[:, None]).any()
