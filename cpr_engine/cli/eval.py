"""cpr-eval: evaluate trained models on each category's test split."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from .common import (add_data_args, add_debug_arg, add_device_args, add_split_args, cli_main, resolve_categories,
                     setup_logging)
from ..outputs import check_own_file, first_line_is, json_has_key

#: the key of eval.json that only cpr-eval writes (its format version): an eval.json without it is not replaced
FORMAT_KEY = "cpr_eval_format"


def build_parser() -> argparse.ArgumentParser:
    from ..data import SPLIT_SEED

    p = argparse.ArgumentParser(
        prog="cpr-eval",
        description="Evaluate models written by cpr-train (MODELS/<category>/model.pt) on the test split: "
                    "image AUROC, pixel AUROC, AUPRO@0.3, pixel AP (and F1-max in the files). Prints a table "
                    "and writes eval.json and eval.csv. Test images a model was trained on (supervised mode) are "
                    "never scored. A test image or ground-truth mask that is missing or cannot be read refuses the "
                    "evaluation (exit status 2, one line naming how many and the first few, no file written): "
                    "metrics over fewer images would describe another test set.")
    add_data_args(p)
    add_device_args(p)
    p.add_argument("--models", default="runs", help="run directory of cpr-train (default ./runs)")
    p.add_argument("--out", default=None,
                   help="where eval.json / eval.csv go (default: --models); an eval.json or eval.csv there that "
                        "cpr-eval did not write (eval.json without its key " + FORMAT_KEY + ", eval.csv without its "
                        "header line) is refused before any work")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write an HTML report into DIR: metrics, F1 and confusion counts at the model's "
                        "threshold, ROC and score histograms, galleries of false positives and missed defects with "
                        "heat maps. DIR must be new, empty or an earlier report (recognized by the marker in its "
                        "index.html); a folder with other files, an index.html that no report wrote or a symbolic "
                        "link is refused before any work")
    p.add_argument("--by-type", action="store_true",
                   help="also a row per defect type of each category (its defective images with the good ones), "
                        "e.g. MVTec LOCO's logical and structural anomalies")
    p.add_argument("--baseline", choices=("none", "knn"), default="none",
                   help="knn: also score a plain full-bank nearest neighbour over the model's own backbone taps "
                        "(same input size, same post-processing, trained on the same good images) and print its "
                        "row under each model's, named <category>[1-NN]")
    add_split_args(p, None, "supervised benchmark protocol: leave out the N defective test images that "
                            "cpr-train --n-anomaly N moved into training (same shuffle, --split-seed); works on "
                            "unsupervised models too, for a baseline on the same images (default: what the model "
                            "was trained with, 0 for an unsupervised model)",
                   f"the one the model was trained with, else {SPLIT_SEED}")
    add_debug_arg(p)
    return p


def evaluation_split(meta: dict, test: list, data: str, n_anomaly: int | None, split_seed: int | None,
                     model_path: Path) -> tuple[list, dict]:
    """The test samples to score and a record of what was left out.

    ``n_anomaly`` / ``split_seed`` None: those the model was trained with (0 / 42 when it was not
    trained with the split). Raises ``ValueError`` when an image the model was trained on would be
    scored: a split that does not leave out every recorded moved image, or a defect file given to
    ``cpr-train --defects`` that is one of the test images.
    """
    from ..data import SPLIT_SEED, relative_names, split_defects

    supervised = meta.get("supervised") or {}
    recorded = supervised.get("split")
    n = n_anomaly if n_anomaly is not None else (recorded["n_anomaly"] if recorded else 0)
    seed = split_seed if split_seed is not None else (recorded["split_seed"] if recorded else SPLIT_SEED)
    moved, remaining = split_defects(test, n, seed)
    moved_names = relative_names([s.image_path for s in moved], data)
    if recorded:
        kept = sorted(set(recorded["moved"]) - set(moved_names))
        if kept:
            raise ValueError(f"{model_path} was trained on the test images {kept} (--n-anomaly {recorded['n_anomaly']} "
                             f"--split-seed {recorded['split_seed']}); this evaluation (--n-anomaly {n} --split-seed "
                             f"{seed}) would score them. Evaluate with --n-anomaly {recorded['n_anomaly']} "
                             f"--split-seed {recorded['split_seed']}")
    trained = {os.path.realpath(d["image"]) for d in supervised.get("defects", [])}
    seen = sorted(s.image_path for s in remaining if os.path.realpath(s.image_path) in trained)
    if seen:
        raise ValueError(f"{model_path} was trained on {len(seen)} of the test images it would be scored on, "
                         f"e.g. {seen[0]!r}; move them out of the test split or train with --n-anomaly")
    return remaining, {"n_anomaly": n, "split_seed": seed, "moved": moved_names, "n_test": len(remaining)}


def knn_baseline(det, train_images: list):
    """The full-bank 1-NN baseline over ``det``'s backbone taps, fitted on ``train_images`` (RGB uint8)."""
    from ..baseline import KNNBaseline
    from ..backbones import build_backbone

    return KNNBaseline(det.config, build_backbone(det.config.backbone), det.device).fit(train_images)


def eval_categories(data: str, dataset: str, categories: list[str] | None, models: str, out: str | None = None,
                    device: str | None = None, batch_size: int = 8, progress: bool = True,
                    n_anomaly: int | None = None, split_seed: int | None = None, baseline: str = "none",
                    by_type: bool = False, report: str | None = None) -> list[dict]:
    """Evaluate each category's model; print the table, write eval.json / eval.csv; return the rows.

    ``n_anomaly`` / ``split_seed``: leave out the defective test images moved into training by the
    supervised protocol (see :func:`evaluation_split`); eval.json records them per category.
    ``by_type``: also a row ``<category>/<defect type>`` per defect type (its images and the good
    ones; MVTec LOCO's logical vs structural anomalies), left out of the mean. ``report``: a folder
    for the HTML report (:mod:`cpr_engine.report`), checked before any work.
    Every category's test split is listed before any model is loaded (defective images without a
    ground-truth mask are refused then); a split with unreadable images or masks is refused with
    one error naming them all (:func:`~cpr_engine.evaluate.evaluate_samples`). Nothing is written
    but the output folder before every category is scored. An eval.json or eval.csv in ``out`` that
    cpr-eval did not write (:data:`FORMAT_KEY`, the header line) is refused first (OutputError).
    """
    from ..data import load_split, read_image
    from ..detector import Detector
    from ..evaluate import METRIC_COLUMNS, evaluate_samples, format_table, mean_row

    from .. import report as html_report

    out_dir = Path(out or models)
    columns = ["category", *METRIC_COLUMNS, "image_F1max", "pixel_F1max"]
    check_own_file(out_dir / "eval.json", json_has_key(FORMAT_KEY), "cpr-eval", "--out")
    check_own_file(out_dir / "eval.csv", first_line_is(",".join(columns)), "cpr-eval", "--out")
    if report:
        html_report.check_report_target(report)
    layout, cats = resolve_categories(data, dataset, categories)
    splits = {cat: load_split(data, layout, cat, "test") for cat in cats}  # every missing mask, before any work
    for cat, samples in splits.items():
        if any(s.label for s in samples) and not any(s.mask_path for s in samples):
            print(f"cpr-eval: note: {cat}: no ground-truth mask for any defective test image ({layout} layout, "
                  "no ground_truth/ folder found): pixel metrics are not computed", file=sys.stderr, flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, details, pages = [], {}, []
    for cat in cats:
        model_path = Path(models) / cat / "model.pt"
        det = Detector.load(model_path, device=device)
        test, split = evaluation_split(det.meta, splits[cat], data, n_anomaly, split_seed, model_path)
        result = evaluate_samples(det, test, batch_size, progress, by_type=by_type, curves=bool(report))
        rows.append({"category": cat, **result["metrics"]})
        if by_type:
            rows += [{"category": f"{cat}/{t}", **m} for t, m in result["by_type"].items()]
        details[cat] = {"model": str(model_path), "supervised_model": bool(det.meta.get("supervised")),
                        "split": split, **result}
        if report:
            page = html_report.CategoryReport(cat, result["metrics"], det.threshold, result["images"], {
                "descriptor": det.config.descriptor, "windows": list(det.config.windows),
                "foreground": det.model.foreground_mode, "K": det.config.top_k, "backbone": det.config.backbone},
                result["pro_curve"])
            html_report.add_galleries(page, det, {s.image_path: s.mask_path for s in test}, Path(report) / "thumbs")
            pages.append(page)
        if baseline == "knn":
            knn = knn_baseline(det, [read_image(s.image_path) for s in load_split(data, layout, cat, "train")])
            base = evaluate_samples(knn, test, batch_size, progress)
            rows.append({"category": f"{cat}[1-NN]", **base["metrics"]})
            details[f"{cat}[1-NN]"] = {"baseline": "knn", "split": split, **base}
    model_rows = [r for r in rows if not r["category"].endswith("[1-NN]") and "/" not in r["category"]]
    if len(model_rows) > 1:
        rows.append(mean_row(model_rows))
        if baseline == "knn":
            rows.append({**mean_row([r for r in rows if r["category"].endswith("[1-NN]")]), "category": "mean[1-NN]"})
    print(format_table(rows), flush=True)
    if report:
        print(f"report: {html_report.write_report(report, pages)}", flush=True)
    (out_dir / "eval.json").write_text(json.dumps({FORMAT_KEY: 1, "dataset": layout, "data": str(data),
                                                   "rows": rows, "categories": details}, indent=2))
    with open(out_dir / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


@cli_main("cpr-eval")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    eval_categories(args.data, args.dataset, args.category, args.models, args.out, args.device, args.batch_size,
                    progress=not args.quiet, n_anomaly=args.n_anomaly, split_seed=args.split_seed,
                    baseline=args.baseline, by_type=args.by_type, report=args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
