"""cpr-demo: build the offline demo data set, train, evaluate, export and predict, in one command."""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from ..config import VARIANTS
from .common import add_debug_arg, cli_main, nonnegative_int, positive_int, setup_logging, torch_device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-demo",
        description="End-to-end demo that needs no download: builds a small MVTec-AD-layout data set from real "
                    "photos shipped in scikit-image (textures brick, grass, gravel; object coffee) with synthetic "
                    "defects, trains one CPR model per category, evaluates it (table of I-AUROC, P-AUROC, AUPRO, "
                    "P-AP, beside a plain full-bank 1-NN over the same backbone taps), exports it (as "
                    "`cpr-export --fp16`) and writes heat-map overlays for a few test images with the exported "
                    "artifact (the torch-free runtime).")
    p.add_argument("--out", default="demo_run", help="output folder (default ./demo_run)")
    p.add_argument("--variant", choices=VARIANTS, default="cpr", help="model variant (default cpr)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="local-metric training steps per category (default: the engine's default, as cpr-train: "
                        "on a CPU the raw backbone taps, no local-metric training)")
    p.add_argument("--train-batch", type=positive_int, default=None, help="training batch size (default 32)")
    p.add_argument("--categories", nargs="*", default=None, help="demo categories (default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the data and of training (default 0)")
    p.add_argument("--device", type=torch_device, default=None, help="torch device (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_arg(p)
    return p


def summary(rows: list[dict], categories: list[str]) -> str:
    """'mean I-AUROC 97.5 (plain 1-NN over the same backbone: 96.0)' from cpr-eval's rows (with the
    1-NN baseline); with one category, that category's rows."""
    by_name = {r["category"]: r for r in rows}
    mean = by_name.get("mean", by_name[categories[0]])
    floor = by_name.get("mean[1-NN]", by_name[f"{categories[0]}[1-NN]"])
    return (f"mean I-AUROC {100 * mean['image_AUROC']:.1f} (plain 1-NN over the same backbone: "
            f"{100 * floor['image_AUROC']:.1f})")


@cli_main("cpr-demo")
def main(argv=None) -> int:
    from ..data import build_demo
    from ..data.demo import DEMO_CATEGORIES
    from ..detector import Detector
    from ..exporter import export_artifact
    from .eval import eval_categories
    from .export import onnx_errors
    from .predict import predict_paths
    from .train import train_categories

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    start = time.time()
    out = Path(args.out)
    categories = args.categories or list(DEMO_CATEGORIES)
    data = build_demo(out / "data", seed=args.seed, categories=categories)
    print(f"[1/5] demo data in {data}", flush=True)
    overrides = {"steps": args.steps, "batch_size": args.train_batch, "seed": args.seed}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    train_categories(str(data), "mvtec", categories, str(out / "runs"), args.variant, overrides,
                     device=args.device, progress=not args.quiet, force=True)  # the demo's own runs only
    print("[2/5] trained", flush=True)
    page = out / "report" if importlib.util.find_spec("matplotlib") else None  # the report extra
    rows = eval_categories(str(data), "mvtec", categories, str(out / "runs"), device=args.device,
                           progress=not args.quiet, baseline="knn", report=page)
    print("[3/5] evaluated -> " + str(out / "runs" / "eval.json") +
          (f", report {page / 'index.html'}" if page else " (no HTML report: pip install 'cpr-engine[report]')"),
          flush=True)
    for cat in categories:
        report = export_artifact(Detector.load(out / "runs" / cat / "model.pt", device="cpu"),
                                 out / "artifacts" / cat, fp16=True, force=True)
        print(f"  {cat}: ONNX vs PyTorch max |error| {onnx_errors(report)}", flush=True)
    print(f"[4/5] exported -> {out / 'artifacts'}", flush=True)
    for cat in categories:
        test_dir = Path(data) / cat / "test"
        test_images = sorted(test_dir.glob("good/*.png"))[:1] + sorted(test_dir.glob("[!g]*/000.png"))[:3]
        predict_paths(str(out / "artifacts" / cat), [str(p) for p in test_images], str(out / "predictions" / cat))
    print(f"[5/5] overlays in {out / 'predictions'} (predicted with the exported artifacts)", flush=True)
    print(f"demo finished in {time.time() - start:.0f} s; {summary(rows, categories)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
