"""Inspection-line example: watch a folder, score every new image, write overlays, show throughput.

    python examples/python/watch_folder.py --model runs/bottle/model.pt --watch /line7/incoming --out /line7/verdicts
    python examples/python/watch_folder.py --model bottle_artifact --watch some/folder --once   # cpr-export folder

With an artifact folder (from ``cpr-export``) it runs without torch: ONNX Runtime and the native kernels.

Each new image (png/jpg/bmp/tif) is scored once; a line "name score verdict" is printed, a heat-map
overlay is written to --out, and every --report seconds the images/s of the last interval is shown.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from cpr_engine import Detector
from cpr_engine.data import ImageReadError, read_image, write_image
from cpr_engine.data.samples import list_image_files
from cpr_engine.overlay import heatmap_overlay


def process(det, paths: list[Path], out: Path) -> int:
    """Score ``paths`` as one batch, print verdicts, write overlays; returns images scored."""
    images, kept = [], []
    for p in paths:
        try:
            images.append(read_image(p))
            kept.append(p)
        except ImageReadError as err:  # a half-copied or corrupt file must not stop the line
            print(f"{p.name} skipped: {err}", flush=True)
    if not images:
        return 0
    for path, image, pred in zip(kept, images, det.predict(images)):
        verdict = "ANOMALOUS" if pred.is_anomalous else "good"
        print(f"{path.name} {pred.score:.2f} {verdict}", flush=True)
        write_image(out / f"{path.stem}_overlay.png", heatmap_overlay(image, pred.anomaly_map, det.pixel_normal))
    return len(images)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model.pt from cpr-train, or an artifact folder from cpr-export")
    p.add_argument("--watch", required=True, help="folder where the camera drops images")
    p.add_argument("--out", default="verdicts", help="folder for overlays (default ./verdicts)")
    p.add_argument("--batch", type=int, default=8, help="images scored per forward pass (default 8)")
    p.add_argument("--poll", type=float, default=0.2, help="seconds between folder scans (default 0.2)")
    p.add_argument("--report", type=float, default=5.0, help="seconds between throughput lines (default 5)")
    p.add_argument("--once", action="store_true", help="score what is there now, then exit")
    args = p.parse_args(argv)

    det = Detector.load(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[Path] = set()
    count, window_start = 0, time.perf_counter()
    while True:
        new = [f for f in list_image_files(args.watch, allow_empty=True) if f not in seen]
        for i in range(0, len(new), args.batch):
            count += process(det, new[i:i + args.batch], out)
        seen.update(new)
        elapsed = time.perf_counter() - window_start
        if count and (elapsed >= args.report or args.once):
            print(f"throughput: {count / elapsed:.1f} images/s ({count} images in {elapsed:.1f} s)", flush=True)
            count, window_start = 0, time.perf_counter()
        if args.once:
            return 0
        time.sleep(args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
