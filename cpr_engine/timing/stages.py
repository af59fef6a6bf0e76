"""The inference pipeline cut into the four stages that ``cpr-bench`` times (``STAGES``).

``preprocessing`` (resize + scale to [0, 1], host -> device), ``network`` (backbone taps, Local
Retrieval Branch or raw taps, foreground map), ``scoring tail`` (``cpr_engine.tail.score``: codebook
histograms, histogram matching, top-K, location-restricted and memory search, offset, foreground,
fusion, blur, top-T score; one native call on the CPU, the ops one by one on CUDA), ``map resize``
(device -> host, maps resized to the images). Each stage reads and writes a ``dict`` state; running
them in order gives exactly what ``predict`` gives (``tests/test_bench.py`` checks it). The tail's
own stages are timed one by one by ``benchmarks/tail_paths.py`` (artifacts) and the ops by
``benchmarks/bench_ops.py``.

The graph backend (:class:`~cpr_engine.graph_pipeline.GraphPipeline`) has three coarse stages
(``GRAPH_STAGES``): everything above runs inside one captured CUDA graph (eager on CPU), so it is
timed together.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import tail
from ..preprocess import resize_map, to_model_input

STAGES = ("preprocessing", "network", "scoring tail", "map resize")
GRAPH_STAGES = ("host -> device", "whole pipeline", "device -> host")
Stage = Callable[[dict], None]


def torch_stages(det) -> list[tuple[str, Stage]]:
    """Stages of a PyTorch ``Detector`` (any device): what its ``predict`` runs. State in: ``images``;
    out: ``scores``, ``maps``."""
    import torch

    model, size, device = det.model, det.config.image_size, det.device

    def preprocessing(st):
        st["x"] = torch.from_numpy(to_model_input(st["images"], size, det.min_image_side)).to(device, non_blocking=True)

    def network(st):
        with torch.no_grad():
            feats = model.features(st["x"])
            st["net"] = model.descriptors(feats), feats[0], model.foreground(feats[0])

    def scoring_tail(st):
        with torch.no_grad():
            st["model_maps"], st["scores"] = tail.score(*st["net"], model.tail_state, model.config,
                                                        impl=model.ops_impl)

    def map_resize(st):
        scores, maps = st["scores"].float().cpu().numpy(), st["model_maps"].float().cpu().numpy()
        st["scores"], st["maps"] = scores, [resize_map(m, im.shape[:2]) for m, im in zip(maps, st["images"])]

    return list(zip(STAGES, (preprocessing, network, scoring_tail, map_resize)))


def artifact_stages(det) -> list[tuple[str, Stage]]:
    """Stages of an :class:`~cpr_engine.runtime.detector.ArtifactDetector` (ONNX Runtime / TensorRT): what its
    ``predict`` runs."""

    def preprocessing(st):
        st["x"] = to_model_input(st["images"], det.image_size, det.min_image_side)

    def network(st):
        st["out"] = det.network(st["x"])

    def scoring_tail(st):
        st["model_maps"], st["scores"] = det.score_outputs(st["out"])

    def map_resize(st):
        st["maps"] = [resize_map(mp, im.shape[:2]) for mp, im in zip(st["model_maps"], st["images"])]

    return list(zip(STAGES, (preprocessing, network, scoring_tail, map_resize)))


def graph_stages(pipe) -> list[tuple[str, Stage]]:
    """Stages of a :class:`~cpr_engine.graph_pipeline.GraphPipeline` built with ``map_size="input"``: the images
    (one size, the pipeline's batch size) are stacked into its pinned input, the graph is replayed (the
    eager pipeline on CPU), the results are copied back (maps at the image size)."""

    def upload(st):
        np.stack(st["images"], out=pipe.host_input)
        pipe.upload()

    def launch(st):
        pipe.launch()

    def download(st):
        scores, maps = pipe.download()
        st["scores"], st["maps"] = scores.copy(), list(maps.copy())

    return list(zip(GRAPH_STAGES, (upload, launch, download)))


def run_stages(stages: list[tuple[str, Stage]], images: list[np.ndarray], sync: Callable[[], None] | None = None,
               clock: Callable[[], float] | None = None) -> tuple[dict, dict[str, float]]:
    """Run the stages on ``images`` (list of (H, W, 3) uint8 RGB).

    Args:
        sync: called after each stage when timing stages (e.g. ``torch.cuda.synchronize``).
        clock: time source in seconds; None: no per-stage times.
    Returns:
        (final state with ``scores`` (B,) float32 and ``maps`` [(H, W) float32], {stage: seconds}).
    """
    state, times = {"images": images}, {}
    for name, stage in stages:
        start = clock() if clock else 0.0
        stage(state)
        if clock:
            if sync:
                sync()
            times[name] = clock() - start
    return state, times
