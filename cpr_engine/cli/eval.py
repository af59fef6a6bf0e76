"""cpr-eval: evaluate trained models on each category's test split."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from .common import add_data_args, add_device_args, resolve_categories, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-eval",
        description="Evaluate models written by cpr-train (MODELS/<category>/model.pt) on the test split: "
                    "image AUROC, pixel AUROC, AUPRO@0.3, pixel AP (and F1-max in the files). Prints a table "
                    "and writes eval.json and eval.csv.")
    add_data_args(p)
    add_device_args(p)
    p.add_argument("--models", default="runs", help="run directory of cpr-train (default ./runs)")
    p.add_argument("--out", default=None, help="where eval.json / eval.csv go (default: --models)")
    return p


def eval_categories(data: str, dataset: str, categories: list[str] | None, models: str, out: str | None = None,
                    device: str | None = None, batch_size: int = 8, progress: bool = True) -> list[dict]:
    """Evaluate each category's model; print the table, write eval.json / eval.csv; return the rows."""
    from ..data import load_split
    from ..detector import Detector
    from ..evaluate import METRIC_COLUMNS, evaluate_samples, format_table, mean_row

    layout, cats = resolve_categories(data, dataset, categories)
    out_dir = Path(out or models)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, details = [], {}
    for cat in cats:
        model_path = Path(models) / cat / "model.pt"
        det = Detector.load(model_path, device=device)
        result = evaluate_samples(det, load_split(data, layout, cat, "test"), batch_size, progress)
        rows.append({"category": cat, **result["metrics"]})
        details[cat] = {"model": str(model_path), **result}
    if len(rows) > 1:
        rows.append(mean_row(rows))
    print(format_table(rows), flush=True)
    (out_dir / "eval.json").write_text(json.dumps({"dataset": layout, "data": str(data), "rows": rows,
                                                   "categories": details}, indent=2))
    columns = ["category", *METRIC_COLUMNS, "image_F1max", "pixel_F1max"]
    with open(out_dir / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    eval_categories(args.data, args.dataset, args.category, args.models, args.out, args.device, args.batch_size,
                    progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
