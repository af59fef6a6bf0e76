"""The scoring tail: everything after the network, written once for every Python front end.

network outputs (descriptors per scale, the fine backbone taps, the query's foreground) + the
training state (codebook centers, train_hists, banks, bank_fg) -> codebook block histograms,
histogram matching and top-K (global retrieval) -> location-restricted nearest-neighbour search ->
foreground fusion -> post-processing (fusion of the scales, upsampling, blur, top-T image score).

Every stage goes through :mod:`cpr_engine.ops`, so the same code runs on NumPy arrays (the
torch-free ``ArtifactDetector``) and on torch tensors on any device (``CPRModel``, the CUDA-graph
``GraphPipeline``, the per-stage benchmark), with the native kernels or the PyTorch reference.
The C++ runtime (``csrc/runtime/detector.cpp``) is the one other place the sequence is written.

``settings`` is anything with the attributes ``grid``, ``kept_blocks``, ``top_k``, ``windows``,
``image_size``, ``blur_sigma`` and ``top_t``: a ``CPRConfig`` or a ``contract.RuntimeSettings``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import ops


class TailState(NamedTuple):
    """What the tail searches, from training (NumPy arrays or torch tensors, one kind for all)."""

    centers: Any  # (M, C) codebook over the fine taps
    train_hists: Any  # (N, grid^2, M + 1) block histograms of the training images
    banks: list  # per scale (N, D, h_s, w_s) descriptors, finest first
    bank_fg: Any  # (N, h_0, w_0) foreground of the training images


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


def local_search(descriptors: list, index, state: TailState, settings, impl: str | None = None,
                 check_index: bool = True) -> list:
    """Per-scale (B, D, h_s, w_s) descriptors and (B, K) indices -> per-scale (B, h_s, w_s) patch scores."""
    return ops.nn_search(descriptors, state.banks, index, list(settings.windows), impl=impl, check_index=check_index)


def fuse_foreground(foreground, index, state: TailState):
    """max(the query's foreground, each retrieved training image's): (B, h_0, w_0) float32; None stays None."""
    if foreground is None:
        return None
    retrieved = state.bank_fg[index]  # (B, K, h_0, w_0)
    if hasattr(retrieved, "amax"):  # a torch tensor (this module never imports torch itself)
        return retrieved.amax(1).maximum(foreground)
    return np.maximum(foreground, retrieved.max(axis=1))


def postprocess(local: list, foreground, index, state: TailState, settings, impl: str | None = None):
    """Patch scores (+ the query's foreground or None) -> maps (B, S, S) float32, scores (B,) float32."""
    return ops.postprocess(local, fuse_foreground(foreground, index, state), settings.image_size,
                           settings.blur_sigma, settings.top_t, impl=impl)


def score(descriptors: list, features, foreground, state: TailState, settings, exclude=None,
          impl: str | None = None, check_index: bool = True):
    """The whole tail: -> maps (B, S, S) float32, scores (B,) float32.

    Args:
        descriptors: per-scale (B, D, h_s, w_s) unit-norm descriptors, finest first.
        features: (B, C, h_0, w_0) fine backbone taps of the queries (the codebook stage's input).
        foreground: (B, h_0, w_0) foreground of the queries, or None (no foreground weighting).
        exclude, impl: see :func:`retrieve`; check_index: see ``ops.nn_search``.
    """
    index = retrieve(features, state, settings, exclude, impl)
    local = local_search(descriptors, index, state, settings, impl, check_index)
    return postprocess(local, foreground, index, state, settings, impl)
