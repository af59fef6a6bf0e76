"""cpr-predict: score images with a trained model and write heat-map overlays."""
from __future__ import annotations

import argparse
import csv
import glob
import os
from pathlib import Path

from .common import add_debug_arg, cli_main, positive_int, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-predict",
        description="Score images with a model.pt from cpr-train, or with an artifact folder from cpr-export "
                    "(runs without torch: ONNX Runtime and the native kernels). Prints 'path,score,threshold,verdict' lines, "
                    "writes OUT/predictions.csv and OUT/<name>_overlay.png heat maps (<name>: the path below the "
                    "inputs' common folder, '/' as '_') (blue = typical good "
                    "surface, green = the highest pixel seen on good training images, red = far above).")
    p.add_argument("inputs", nargs="+", help="image files, folders, or glob patterns (quote them)")
    p.add_argument("--model", default="runs/model.pt",
                   help="model file written by cpr-train, or an artifact folder written by cpr-export")
    p.add_argument("--out", default="predictions", help="output folder for overlays and CSV (default ./predictions)")
    p.add_argument("--device", default=None, help="torch device for a model.pt (default: cuda when available; an artifact "
                                                    "picks its ONNX Runtime providers itself)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--no-overlays", action="store_true", help="only scores, no overlay images")
    p.add_argument("--quiet", action="store_true", help="less logging")
    add_debug_arg(p)
    return p


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images) and glob patterns -> sorted unique image paths; error if none."""
    from ..data.samples import list_image_files

    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += list_image_files(p)
        elif p.is_file():
            paths.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise SystemExit(f"error: no such file, folder or matching pattern: {item}")
            paths += matches
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise SystemExit(f"error: no image files in {inputs}")
    return unique


def overlay_names(paths: list[Path]) -> dict[Path, str]:
    """Unique overlay file names: the path relative to the inputs' common folder, '/' -> '_'."""
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return {p: "_".join(p.resolve().relative_to(root).with_suffix("").parts) + "_overlay.png" for p in paths}


def predict_paths(model: str, inputs: list[str], out: str, device: str | None = None, batch_size: int = 8,
                  overlays: bool = True) -> list[dict]:
    """Score images, write overlays and predictions.csv; return one dict per image."""
    from ..data import read_image, write_image
    from ..detector import Detector
    from ..overlay import heatmap_overlay

    det = Detector.load(model, device=device)
    paths = expand_inputs(inputs)
    names = overlay_names(paths)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    normal_level = det.pixel_normal
    rows = []
    for i in range(0, len(paths), batch_size):
        chunk = paths[i:i + batch_size]
        images = [read_image(p) for p in chunk]
        for path, image, pred in zip(chunk, images, det.predict(images, batch_size=batch_size)):
            row = {"path": str(path), "score": pred.score, "threshold": det.threshold,
                   "verdict": "anomalous" if pred.is_anomalous else "good"}
            if overlays:
                target = out_dir / names[path]
                write_image(target, heatmap_overlay(image, pred.anomaly_map, normal_level))
                row["overlay"] = str(target)
            rows.append(row)
            print(f"{path},{pred.score:.4f},{det.threshold:.4f},{row['verdict']}", flush=True)
    with open(out_dir / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "score", "threshold", "verdict", "overlay"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


@cli_main("cpr-predict")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    predict_paths(args.model, args.inputs, args.out, args.device, args.batch_size, overlays=not args.no_overlays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
