"""The scoring tail: everything after the network, written once for every Python front end.

network outputs (descriptors per scale, the fine backbone taps, the query's foreground) + the
training state (codebook centers, train_hists, banks, bank_fg, memories, location_offset) ->
codebook block histograms, histogram matching and top-K (global retrieval) -> location-restricted
nearest-neighbour search in the K images, and a whole-map search in the memory (a coreset of all
training patches) -> location offset (the training images' per-location excess subtracted from the
fine patch scores) -> map weight (foreground, on the map or on the image score only) ->
post-processing (fusion of the scales, upsampling, blur, top-T image score).

Every stage goes through :mod:`cpr_engine.ops`, so this composition runs on torch tensors on any
device, with the native kernels or the PyTorch reference (gradients, export tracing, leave-one-out
scoring on CUDA), and stage by stage on NumPy arrays (``benchmarks/tail_paths.py``). The native tail
(``csrc/tail``, ``<cpr/tail.h>``, CPU and CUDA) is the one other place the sequence is written:
:func:`score` on NumPy arrays, CPU tensors or CUDA tensors (the torch-free ``ArtifactDetector``,
``CPRModel`` scoring with training's leave-one-out scores on the CPU, the CUDA-graph ``GraphPipeline``)
is one call into it, and so is ``cpr::Detector``; ``tests/test_tail.py`` holds it to this module's
composition.

``settings`` is anything with the attributes ``grid``, ``kept_blocks``, ``top_k``, ``windows``,
``image_size``, ``blur_sigma``, ``top_t`` and ``foreground_on_map``: a ``CPRConfig`` or a
``contract.RuntimeSettings``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import ops


class TailState(NamedTuple):
    """What the tail searches, from training (NumPy arrays or torch tensors, one kind for all)."""

    centers: Any  # (n_clusters, C) codebook over the fine taps
    train_hists: Any  # (N, grid^2, n_clusters + 1) block histograms of the training images
    banks: list  # per scale (N, D, h_s, w_s) descriptors, finest first
    bank_fg: Any  # (N, h_0, w_0) foreground of the training images
    memories: list  # per scale (M_s, D, h_s, w_s) coreset of every training patch, searched whole
    memory_indices: list  # per scale (1, M_s) int64: 0 .. M_s - 1
    location_offset: Any  # (h_0, w_0) float32 subtracted from the fine patch scores (zeros: none)
    memory_sources: list | None = None  # per scale (M_s, h_s, w_s) int64 training image of each memory patch


def histograms(features, state: TailState, settings, impl: str | None = None):
    """(B, C, h_0, w_0) fine backbone taps -> (B, grid^2, M + 1) codebook block histograms."""
    return ops.codebook_histogram(features, state.centers, settings.grid, impl=impl)[1]


def retrieve(features, state: TailState, settings, exclude=None, impl: str | None = None):
    """(B, C, h_0, w_0) fine backbone taps -> (B, K) int64 closest training images, closest first
    (codebook block histograms, robust histogram matching, top-K).

    ``exclude``: optional (B,) training index each query must not retrieve (leave-one-out scoring).
    """
    distances = ops.hist_match(histograms(features, state, settings, impl), state.train_hists, settings.kept_blocks,
                               impl=impl)
    return ops.top_k(distances, settings.top_k, exclude, impl=impl)


def whole_map_windows(state: TailState) -> list[int]:
    """Per scale the window side that covers a whole map (2 side - 1): the memory's search window."""
    return [2 * max(memory.shape[-2:]) - 1 for memory in state.memories]


def local_search(descriptors: list, index, state: TailState, settings, impl: str | None = None,
                 check_index: bool = True, exclude=None) -> list:
    """Per-scale (B, D, h_s, w_s) descriptors and (B, K) indices -> per-scale (B, h_s, w_s) patch scores.

    A patch's score is its distance to the closest of: the retrieved images' patches inside its
    window, and every memory patch (searched over the whole map).
    ``exclude``: optional (B,) int64 torch tensor, the training image each query must not match
    (leave-one-out scoring): its memory patches are zeroed for that query (cosine 0, never closer).
    """
    near = ops.nn_search(descriptors, state.banks, index, list(settings.windows), impl=impl, check_index=check_index)
    batch = index.shape[0]
    if exclude is None:
        memories = state.memories
        if hasattr(index, "expand"):  # a torch tensor (this module never imports torch itself)
            indices = [rows.expand(batch, -1).contiguous() for rows in state.memory_indices]
        else:
            indices = [np.repeat(rows, batch, axis=0) for rows in state.memory_indices]
    else:
        memories, indices = _memories_without(state, exclude)
    # one search per scale: the scales' memories hold different numbers of maps
    whole = [ops.nn_search([d], [memory], rows, [window], impl=impl, check_index=check_index)[0]
             for d, memory, rows, window in zip(descriptors, memories, indices, whole_map_windows(state))]
    return [_closer(a, b) for a, b in zip(near, whole)]


def _closer(a, b):
    """Elementwise minimum of two patch-score maps; where either is NaN or inf the result is too (a
    damaged bank or memory must poison the score, never be hidden by the other search)."""
    total = a + b
    if hasattr(a, "minimum"):  # a torch tensor
        return a.minimum(b).where(total.isfinite(), total)
    return np.where(np.isfinite(total), np.minimum(a, b), total)


def _memories_without(state: TailState, exclude):
    """Per-query memories with each query's excluded training image zeroed: per scale (B * M_s, D, h, w)
    and the (B, M_s) rows of each query's copy (torch only: leave-one-out scoring happens in training)."""
    if state.memory_sources is None:
        raise ValueError("local_search: exclude needs the memory's sources (a torch model's tail state)")
    memories, indices = [], []
    first = exclude.new_ones(exclude.shape[0]).cumsum(0) - 1  # 0, 1, 2, ...
    for memory, sources, rows in zip(state.memories, state.memory_sources, state.memory_indices):
        keep = (sources[None] != exclude[:, None, None, None]).to(memory.dtype)  # (B, M_s, h, w)
        memories.append((memory[None] * keep[:, :, None]).flatten(0, 1))
        indices.append((first * rows.shape[1])[:, None] + rows)  # query b's copy: rows b M_s .. (b + 1) M_s - 1
    return memories, indices


def offset_locations(local: list, state: TailState) -> list:
    """Per-scale (B, h_s, w_s) patch scores -> the same with max(fine - location offset, 0) at the
    fine scale: what a location scores on good images beyond the map's mean no longer counts."""
    fine = local[0] - state.location_offset
    fine = fine.clamp_min(0) if hasattr(fine, "clamp_min") else np.maximum(fine, 0, dtype=np.float32)
    return [fine, *local[1:]]


def map_weight(foreground, index, state: TailState):
    """The fused map's factor, (B, h_0, w_0) float32, or None without a ``foreground``:
    max(the query's foreground, each retrieved training image's)."""
    if foreground is None:
        return None
    retrieved = state.bank_fg[index]  # (B, K, h_0, w_0)
    if hasattr(retrieved, "amax"):
        return retrieved.amax(1).maximum(foreground)
    return np.maximum(foreground, retrieved.max(axis=1))


def postprocess(local: list, foreground, index, state: TailState, settings, impl: str | None = None):
    """Patch scores (+ the query's foreground or None) -> maps (B, S, S) float32, scores (B,) float32
    (location offset, map weight, then ``ops.postprocess``).

    The map weight multiplies the fused map, and so the image score; with
    ``settings.foreground_on_map`` False it weights the image score only and the maps are unweighted
    (a second ``ops.postprocess``).
    """
    local = offset_locations(local, state)
    weight = map_weight(foreground, index, state)
    sizes = (settings.image_size, settings.blur_sigma, settings.top_t)
    maps, scores = ops.postprocess(local, weight if settings.foreground_on_map else None, *sizes, impl=impl)
    if weight is not None and not settings.foreground_on_map:
        scores = ops.postprocess(local, weight, *sizes, impl=impl)[1]
    return maps, scores


def score(descriptors: list, features, foreground, state: TailState, settings, exclude=None,
          impl: str | None = None, check_index: bool = True):
    """The whole tail: -> maps (B, S, S) float32, scores (B,) float32.

    Args:
        descriptors: per-scale (B, D, h_s, w_s) unit-norm descriptors, finest first.
        features: (B, C, h_0, w_0) fine backbone taps of the queries (the codebook stage's input).
        foreground: (B, h_0, w_0) foreground of the queries, or None (no foreground weighting).
        exclude, impl: see :func:`retrieve`; check_index: see ``ops.nn_search``.
    Inputs that the ops would send to the native kernels run the native tail in one call
    (``ops.score_tail``; ``ops.native_tail_for`` says when): NumPy arrays and CPU tensors when it was
    built with a BLAS (with ``exclude`` when the state has the memory's sources, as a torch model's
    has), CUDA tensors without ``exclude``; anything else (grad, tracing, the reference, leave-one-out
    on CUDA) the stages below.
    """
    if (exclude is None or state.memory_sources is not None) and \
            ops.native_tail_for(impl, [features, *descriptors, foreground, exclude], exclude is not None):
        return ops.score_tail(descriptors, features, foreground, state, settings, exclude)
    index = retrieve(features, state, settings, exclude, impl)
    local = local_search(descriptors, index, state, settings, impl, check_index, exclude)
    return postprocess(local, foreground, index, state, settings, impl)
