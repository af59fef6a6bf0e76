"""Accuracy and CPU speed of the variants on the demo set, side by side.

Usage (after `cpr-demo --variant V --out DIR` for each variant):
    python benchmarks/demo_variants.py cpr=demo_run fast=/tmp/demo_fast faster=/tmp/demo_faster

For every variant it reads DIR/runs/eval.json (the metrics cpr-demo printed) and times
`Detector.predict` on each category's test images, one image at a time (PNG decode excluded,
resize + network + retrieval + post-processing + map resize included), and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cpr_engine import Detector
from cpr_engine.data import load_split, read_image


def time_variant(run_dir: Path, data_dir: Path, categories: list[str], device: str) -> float:
    """Median milliseconds per image over every test image of every category (batch 1)."""
    times = []
    for cat in categories:
        det = Detector.load(run_dir / cat / "model.pt", device=device)
        images = [read_image(s.image_path) for s in load_split(data_dir, "mvtec", cat, "test")]
        det.predict(images[0])  # warm-up
        for image in images:
            start = time.perf_counter()
            det.predict(image)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="VARIANT=DEMO_OUT_DIR pairs")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}\n")
    print("| variant | I-AUROC | P-AUROC | AUPRO | P-AP | train s (4 categories) | ms / image |")
    print("|---|---|---|---|---|---|---|")
    for pair in args.runs:
        variant, out = pair.split("=", 1)
        out = Path(out)
        report = json.loads((out / "runs" / "eval.json").read_text())
        mean = report["rows"][-1]
        cats = [r["category"] for r in report["rows"] if r["category"] != "mean"]
        train_s = sum(json.loads((out / "runs" / c / "train.json").read_text())["seconds"] for c in cats)
        ms = time_variant(out / "runs", out / "data", cats, args.device)
        cells = [f"{100 * mean[k]:.1f}" for k in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "pixel_AP")]
        print(f"| `{variant}` | " + " | ".join(cells) + f" | {train_s:.0f} | {ms:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
