"""Timing of the inference pipeline: warm-up, timed runs, percentiles, per-stage breakdown, peak memory."""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from .stages import artifact_stages, graph_stages, run_stages, torch_stages

BENCH_CATEGORY = "coffee"  # an object category: the foreground branch is timed too
BENCH_TRAIN_STEPS = 20


def cache_dir() -> Path:
    """Where cpr-bench keeps its demo data and models (``$CPR_ENGINE_CACHE``, default ~/.cache/cpr-engine)."""
    return Path(os.environ.get("CPR_ENGINE_CACHE", Path.home() / ".cache" / "cpr-engine")) / "bench"


def demo_images(data_root: Path) -> list[Path]:
    """Test images (good and defective real photos) of the bench category of the offline demo set,
    built under ``data_root`` on first use."""
    from ..data import build_demo

    if not (data_root / BENCH_CATEGORY / "test").is_dir():
        build_demo(data_root, seed=0, categories=(BENCH_CATEGORY,))
    return sorted((data_root / BENCH_CATEGORY / "test").glob("*/*.png"))


def demo_model(variant: str, backbone: str | None = None, root: Path | None = None, **overrides) -> Path:
    """The bench model of a variant: trained once on the demo category, cached as ``model.pt``.

    Training is short (speed does not depend on it); ``overrides`` are ``CPRConfig`` fields (tests).
    """
    from ..detector import Detector

    root = root or cache_dir()
    tag = "-".join([variant, backbone or "default", *(f"{k}{v}" for k, v in sorted(overrides.items()))])
    path = root / "models" / tag / "model.pt"
    if not path.is_file():
        demo_images(root / "data")
        overrides.setdefault("steps", BENCH_TRAIN_STEPS)
        det = Detector(variant, backbone=backbone, device="cpu", **overrides)
        det.fit(root / "data" / BENCH_CATEGORY, category=BENCH_CATEGORY)
        det.save(path)
    return path


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0-100) with linear interpolation, as numpy.percentile."""
    return float(np.percentile(np.asarray(values), q))


def peak_memory_mib(device: str) -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, else the peak resident set size."""
    if device.startswith("cuda"):
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench(det, backend: str, images: list[np.ndarray], batch: int, warmup: int, runs: int) -> dict:
    """Time ``det`` on batches drawn cyclically from ``images``.

    Args:
        det: a PyTorch ``Detector`` (backend "torch"), an ``ArtifactDetector`` (backends "onnxruntime",
            "tensorrt") or a ``GraphPipeline`` with ``map_size="input"`` and batch size ``batch`` (backend
            "graph"; its images must all have the size it was built for).
        images: (H, W, 3) uint8 RGB images; batch: images per call; warmup / runs: untimed / timed calls.
    Returns:
        {"latency_ms": {"p50", "p99", "mean"} per image, "batch_latency_ms": {...} per call,
        "throughput_images_per_s", "stages_ms": {stage: mean ms per image}, "peak_memory_mib"}.
        The stages are ``stages.STAGES``, or ``stages.GRAPH_STAGES`` for the graph backend.
        End-to-end runs have no synchronisation between stages; the stage breakdown comes from
        separate runs that synchronise after every stage.
    """
    if batch < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"bench: need batch >= 1, runs >= 1, warmup >= 0; got {batch}, {runs}, {warmup}")
    device = str(getattr(det, "device", "cpu"))
    sync = None
    if device.startswith("cuda"):
        import torch
        sync = torch.cuda.synchronize
        torch.cuda.reset_peak_memory_stats()
    make_stages = {"torch": torch_stages, "graph": graph_stages}.get(backend, artifact_stages)
    stages = make_stages(det)
    batches = [[images[(i * batch + j) % len(images)] for j in range(batch)] for i in range(warmup + runs)]
    for chunk in batches[:warmup]:
        run_stages(stages, chunk)
    if sync:
        sync()
    totals = []
    for chunk in batches[warmup:]:
        start = time.perf_counter()
        run_stages(stages, chunk)  # ends with the device -> host copy of scores and maps
        totals.append(time.perf_counter() - start)
    per_stage = {name: [] for name, _ in stages}
    for chunk in batches[warmup:]:
        _, times = run_stages(stages, chunk, sync=sync, clock=time.perf_counter)
        for name, seconds in times.items():
            per_stage[name].append(seconds)
    per_image = [1000 * t / batch for t in totals]
    return {
        "latency_ms": {"p50": percentile(per_image, 50), "p99": percentile(per_image, 99),
                       "mean": statistics.fmean(per_image)},
        "batch_latency_ms": {"p50": percentile([1000 * t for t in totals], 50),
                             "p99": percentile([1000 * t for t in totals], 99)},
        "throughput_images_per_s": batch * len(totals) / sum(totals),
        "stages_ms": {name: 1000 * statistics.fmean(v) / batch for name, v in per_stage.items()},
        "peak_memory_mib": peak_memory_mib(device),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        info["torch"] = None
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info
