"""Unsupervised vs supervised CPR on the demo set, evaluated on the same remaining test images.

Usage:
    python benchmarks/supervised_demo.py --out /tmp/sup_demo [--variant fast --steps 80 --n 1 3 10]

Builds the demo set with more defective test images than cpr-demo (``--n-test-defect``, default 22,
so that moving the largest N still leaves defective images to score), trains one model per
category for N = 0 (unsupervised) and every ``--n`` (``cpr-train --n-anomaly N``: the defective test
images are shuffled with seed 42 and the first N move into training with their masks), and
evaluates every model on the images that remain after moving the largest N. The shuffle is the
same for every N, so that set excludes every image any of the models trained on, and all models
are scored on exactly the same images. Prints a Markdown table (mean over categories and per
category) and writes OUT/supervised.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from cpr_engine.cli.eval import eval_categories
from cpr_engine.cli.train import train_categories
from cpr_engine.data import build_demo
from cpr_engine.data.demo import DEMO_CATEGORIES

METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "pixel_AP")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (data, runs, supervised.json)")
    p.add_argument("--variant", default="fast", help="model variant (default fast)")
    p.add_argument("--steps", type=int, default=80, help="training steps per category (default 80)")
    p.add_argument("--train-batch", type=int, default=4, help="training batch size (default 4)")
    p.add_argument("--n", type=int, nargs="+", default=[1, 3, 10], help="defective images moved (default 1 3 10)")
    p.add_argument("--n-test-defect", type=int, default=22, help="defective test images per category (default 22)")
    p.add_argument("--categories", nargs="*", default=None, help="demo categories (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    args = p.parse_args(argv)

    out = Path(args.out)
    cats = args.categories or list(DEMO_CATEGORIES)
    data = build_demo(out / "data", seed=args.seed, categories=cats, n_test_defect=args.n_test_defect)
    held_out = max(args.n)
    overrides = {"steps": args.steps, "batch_size": args.train_batch, "seed": args.seed}
    results = {}
    for n in [0, *args.n]:
        runs = out / f"runs_n{n}"
        start = time.time()
        train_categories(str(data), "mvtec", cats, str(runs), args.variant, overrides, device=args.device,
                         progress=False, n_anomaly=n, force=True)  # this script's own runs
        seconds = time.time() - start
        rows = eval_categories(str(data), "mvtec", cats, str(runs), device=args.device, progress=False,
                               n_anomaly=held_out)
        results[n] = {"train_seconds": seconds, "rows": rows}

    report = {"machine": platform.processor() or platform.machine(), "variant": args.variant, "steps": args.steps,
              "train_batch": args.train_batch, "n_test_defect": args.n_test_defect, "evaluated_with_n_anomaly": held_out,
              "results": {str(n): r for n, r in results.items()}}
    (out / "supervised.json").write_text(json.dumps(report, indent=2))
    print(f"\nvariant {args.variant}, {args.steps} steps x batch {args.train_batch}; every model scored on the same "
          f"test images (those left after moving {held_out})\n")
    print("| training | " + " | ".join(c for c in cats) + " | mean I-AUROC | mean P-AUROC | mean AUPRO | mean P-AP |")
    print("|---|" + "---|" * (len(cats) + 4))
    for n, r in results.items():
        by_cat = {row["category"]: row for row in r["rows"]}
        mean = r["rows"][-1] if len(r["rows"]) > 1 else r["rows"][0]
        label = "unsupervised" if n == 0 else f"N = {n}"
        cells = [f"{100 * by_cat[c]['image_AUROC']:.1f} / {100 * by_cat[c]['pixel_AP']:.1f}" for c in cats]
        print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(f"{100 * mean[k]:.1f}" for k in METRICS) + " |")
    print("\n(per category: I-AUROC / P-AP)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
