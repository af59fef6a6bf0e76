"""cpr-bench: latency, throughput, per-stage times and peak memory of a variant on a backend."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..config import VARIANTS
from ..outputs import check_own_file, json_has_key
from .common import (add_debug_arg, cli_main, int_in_range, nonnegative_int, positive_int, setup_logging,
                     torch_device)

BACKENDS = ("torch", "onnxruntime", "tensorrt", "graph")
TORCH_BACKENDS = ("torch", "graph")  # time a model.pt through PyTorch
#: the key of the JSON report that only cpr-bench writes (its format version): a file without it is not replaced
FORMAT_KEY = "cpr_bench_format"
MAX_BATCH = 1024  # images per timed call: 1024 inputs of 320 px are 1.2 GiB of float32 before any activation


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-bench",
        description="Time CPR inference end to end (uint8 images on the host in, scores and maps at the image size "
                    "on the host out): warm-up, then timed runs; prints latency p50/p99 per image, throughput, a "
                    "per-stage breakdown (preprocessing, network, scoring tail, map resize: what predict runs) "
                    "and peak memory, and writes the same as JSON. Without --model it trains (once, cached) a short "
                    "demo model of the variant on the offline demo data: its speed is the variant's, its accuracy "
                    "is not.")
    p.add_argument("--variant", choices=VARIANTS, default="faster", help="variant of the demo model (default faster)")
    p.add_argument("--backbone", default=None, help="backbone of the demo model (default: the variant's)")
    p.add_argument("--model", default=None, help="a model.pt or an artifact folder to time instead of the demo model")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="torch (model.pt), onnxruntime or tensorrt (an artifact; a model.pt is exported to a "
                        "temporary one first), or graph (model.pt through cpr_engine.graph_pipeline.GraphPipeline: fixed "
                        "shapes, float16 network, one CUDA graph with --device cuda; eager float32 on CPU; the "
                        "images must all have one size) (default torch)")
    p.add_argument("--device", type=torch_device, default="cpu",
                   help="torch device of the torch and graph backends: cpu or cuda (default cpu)")
    p.add_argument("--fp16", action="store_true", help="export with float16 banks (onnxruntime / tensorrt backends)")
    p.add_argument("--batch", type=int_in_range(1, MAX_BATCH), default=1,
                   help=f"images per call, at most {MAX_BATCH} (default 1)")
    p.add_argument("--warmup", type=nonnegative_int, default=5, help="untimed calls first (default 5)")
    p.add_argument("--runs", type=positive_int, default=50, help="timed calls (default 50)")
    p.add_argument("--images", default=None, help="folder of images to time on (default: the demo test images)")
    p.add_argument("--json", default="bench.json",
                   help="where the JSON report goes (default ./bench.json); an existing file is replaced only when it "
                        "is an earlier cpr-bench report (a JSON object with the key " + FORMAT_KEY + "), else refused "
                        "before any work")
    p.add_argument("--quiet", action="store_true", help="less logging")
    add_debug_arg(p)
    return p


def load_detector(model: Path, backend: str, device: str, fp16: bool, tmp: str):
    """The detector to time: PyTorch for backends torch and graph, else an ArtifactDetector (exporting a model.pt)."""
    from ..detector import Detector
    from ..runtime.detector import ArtifactDetector

    if backend in TORCH_BACKENDS:
        if model.is_dir():
            raise SystemExit(f"error: --backend {backend} needs a model.pt, {model} is a folder (artifact); use "
                             f"--backend onnxruntime or tensorrt")
        return Detector.load(model, device=device)
    if not model.is_dir():
        from ..exporter import export_artifact
        trt = "yes" if backend == "tensorrt" else "no"
        model = Path(export_artifact(Detector.load(model, device="cpu"), Path(tmp) / "artifact", fp16=fp16,
                                     trt=trt)["artifact"])
    return ArtifactDetector.load(model, backend=backend)


def graph_pipeline(det, images: list, batch: int):
    """The ``GraphPipeline`` that ``--backend graph`` times: built for the images' one size, maps at that size."""
    from ..graph_pipeline import GraphPipeline

    sizes = sorted({im.shape[:2] for im in images})
    if len(sizes) != 1:
        raise SystemExit(f"error: --backend graph needs images of one size (shapes are fixed when the graph is "
                         f"captured); got {len(sizes)} sizes: {sizes[:4]}")
    return GraphPipeline(det, batch, sizes[0], map_size="input")


def format_report(report: dict) -> str:
    """The report as a readable table."""
    c, lat = report["config"], report["latency_ms"]
    lines = [f"cpr-bench: variant {c['variant']}, backend {c['backend']}, device {c['device']}, batch {c['batch']}, "
             f"{c['runs']} runs after {c['warmup']} warm-up, image size {c['image_size']}, "
             f"{report['machine']['processor']} ({report['machine']['cpu_count']} CPUs)",
             f"  latency per image   p50 {lat['p50']:9.3f} ms   p99 {lat['p99']:9.3f} ms   mean {lat['mean']:9.3f} ms",
             f"  throughput          {report['throughput_images_per_s']:9.1f} images/s",
             f"  peak memory         {report['peak_memory_mib']:9.1f} MiB",
             "  stage (synchronised runs)      ms / image"
             + ("   (graph backend: the stages run as one CUDA graph, eagerly on CPU)" if c["backend"] == "graph" else "")]
    lines += [f"    {name:<28} {ms:9.3f}" for name, ms in report["stages_ms"].items()]
    return "\n".join(lines)


@cli_main("cpr-bench")
def main(argv=None) -> int:
    from ..timing.run import bench, cache_dir, demo_images, demo_model, machine
    from ..data import read_image
    from ..data.samples import list_image_files

    args = build_parser().parse_args(argv)
    check_own_file(Path(args.json), json_has_key(FORMAT_KEY), "cpr-bench", "--json")
    setup_logging(args.quiet)
    model = Path(args.model) if args.model else demo_model(args.variant, args.backbone)
    paths = list_image_files(args.images) if args.images else demo_images(cache_dir() / "data")
    images = [read_image(p) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        det = load_detector(model, args.backend, args.device, args.fp16, tmp)
        timed = graph_pipeline(det, images, args.batch) if args.backend == "graph" else det
        result = bench(timed, args.backend, images, args.batch, args.warmup, args.runs)
        config = det.config.to_dict() if args.backend in TORCH_BACKENDS else det.manifest["config"]
    report = {FORMAT_KEY: 1, "machine": machine(),
              "config": {"variant": config["variant"], "backbone": config["backbone"], "backend": args.backend,
                         "device": args.device if args.backend in TORCH_BACKENDS else
                         ",".join(getattr(det.network, "providers", ["cuda"])),
                         "batch": args.batch, "warmup": args.warmup, "runs": args.runs,
                         "image_size": config["image_size"], "fp16_bank": bool(args.fp16 and args.backend not in TORCH_BACKENDS),
                         "model": str(model), "images": len(images),
                         **({"cuda_graph": timed.graph, "fp16_network": timed.fp16} if args.backend == "graph" else {})},
              **result}
    print(format_report(report), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
