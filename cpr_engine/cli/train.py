"""cpr-train: train one CPR model per category on good images (optionally with a few real defects)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from .common import (add_data_args, add_debug_arg, add_device_args, add_split_args, add_train_args, cli_main,
                     config_overrides, is_texture, resolve_categories, setup_logging)


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from ..data import SPLIT_SEED
    from ..training.real_defects import P_PASTE, P_REAL_DEFECT

    p = argparse.ArgumentParser(
        prog="cpr-train",
        description="Train CPR (Cascade Patch Retrieval) on the good training images of each category. "
                    "Writes OUT/<category>/model.pt, config.json, train.json, train.log and checkpoints/ "
                    "(and supervised.json in supervised mode); a category already trained in OUT is refused "
                    "unless --force. Without --n-anomaly no test image is read. Decided from the training "
                    "images, with no flag: 15% of them are held out and scored clean and with synthetic defects; "
                    "the descriptor (raw backbone taps or the learned local metric, see --descriptor), the "
                    "foreground branch (on the map, on the image score only, or off), the location offset (on/off) "
                    "and the search windows (the offsets the data needs, at most 9 / 5, or a global search) with "
                    "the best mean of I-AUROC, P-AUROC, AUPRO and P-AP there (within 0.005 of it: the cheapest "
                    "search, then the location offset on; equal means: the cheapest foreground mode) are kept and "
                    "printed. The decision threshold comes from the leave-one-out scores of the training images "
                    "(from 10 images on their median + 3.09 x 1.4826 x MAD, at most top-T x the largest good pixel "
                    "score; else their largest), or, where the layout keeps good images out of training "
                    "(<category>/validation/good of MVTec AD 2 and MVTec LOCO), from the scores of those by the "
                    "same rule. Every model keeps a memory, a coreset of 1%% of all "
                    "fine and 5%% of all coarse training patches searched beside the K retrieved images, so a match that lies on no retrieved "
                    "image is still found. Why these defaults: benchmarks/RESULTS.md.")
    add_data_args(p)
    add_train_args(p)
    add_device_args(p)
    p.add_argument("--out", default="runs", help="run directory (default ./runs)")
    p.add_argument("--force", action="store_true",
                   help="train a category that already has OUT/<category>/model.pt: its run files (model.pt, "
                        "config.json, train.json, train.log, checkpoints/, supervised.json) are replaced by the new "
                        "run's once it is complete; other files in that folder are kept")
    supervised = p.add_argument_group(
        "supervised mode", "train with a few real defective images and their masks, as in the CPR paper's supervised "
                           "setting; "
                           "the files used are recorded in model.pt and OUT/<category>/supervised.json")
    add_split_args(supervised, 0, "benchmark protocol: per category, shuffle the defective test images with "
                                  "--split-seed, move the first N (with their ground-truth masks) into training; "
                                  "evaluate with cpr-eval --n-anomaly N, which scores only the rest (default 0: "
                                  "unsupervised)", f"{SPLIT_SEED}, as DRA and the CPR reference code")
    supervised.add_argument(
        "--defects", default=None, metavar="DIR",
        help="real use: folder of defect images, each with its mask (same file stem): DIR/<stem>.png and "
             "DIR/masks/<stem>.png, DIR/masks/<stem>_mask.png or DIR/<stem>_mask.png (any image extension; "
             "defect = mask pixels > 0, mask of the image's size). One category only (use --category)")
    supervised.add_argument("--p-real-defect", type=probability, default=P_REAL_DEFECT, metavar="P",
                            help=f"probability that a training query is a real defective image instead of a "
                                 f"synthetic one (default {P_REAL_DEFECT})")
    supervised.add_argument("--p-paste", type=probability, default=P_PASTE, metavar="P",
                            help=f"probability that 1-5 real defects are pasted onto a training query "
                                 f"(default {P_PASTE})")
    add_debug_arg(p)
    return p


def supervision_plan(data: str, layout: str, cats: list[str], n_anomaly: int, split_seed: int | None,
                     defects: str | None) -> dict:
    """{category: (defects for Detector.fit, split record or None)} for categories trained supervised.

    Checked for every category before anything is trained, so a bad N fails at once.
    """
    from ..data import SPLIT_SEED, load_split, relative_names, split_defects

    if n_anomaly and defects:
        raise SystemExit("error: --n-anomaly (defects from the test split) and --defects DIR exclude each other")
    if defects:
        if len(cats) != 1:
            raise SystemExit(f"error: --defects DIR holds the defects of one category; choose it with --category "
                             f"(found: {cats})")
        return {cats[0]: (defects, None)}
    if not n_anomaly:
        return {}
    seed = SPLIT_SEED if split_seed is None else split_seed
    plan = {}
    for cat in cats:
        moved, remaining = split_defects(load_split(data, layout, cat, "test"), n_anomaly, seed)
        split = {"n_anomaly": n_anomaly, "split_seed": seed, "data": str(Path(data).resolve()),
                 "moved": relative_names([s.image_path for s in moved], data),
                 "n_test_remaining": len(remaining)}
        plan[cat] = ([(s.image_path, s.mask_path) for s in moved], split)
    return plan


# what one run writes into OUT/<category>; model.pt last, so it appears once the rest is in place
RUN_FILES = ("checkpoints", "train.log", "config.json", "train.json", "supervised.json", "model.pt")


def check_run_targets(out: str | Path, categories: list[str], force: bool) -> None:
    """Refuse, before any work, to train over a category already trained in ``out`` unless ``force``.

    Raises:
        OutputError naming the path: ``out`` or ``out/<category>`` is an existing file; an existing
        ``out/<category>/model.pt`` without ``force``.
    """
    from ..errors import OutputError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is an existing file, not a folder")
    for cat in categories:
        run_dir = out / cat
        if run_dir.exists() and not run_dir.is_dir():
            raise OutputError(f"{run_dir} is an existing file, not a run folder; refusing to replace it")
        model = run_dir / "model.pt"
        if (model.exists() or model.is_symlink()) and not force:
            raise OutputError(f"{model} already exists; --force replaces it (and the other run files of {cat}: "
                              f"{', '.join(RUN_FILES[:-1])})")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def install_run(stage: Path, run_dir: Path) -> None:
    """Move a complete run from ``stage`` into ``run_dir``: each of ``RUN_FILES`` is the new run's (or
    gone, where the new run wrote none: no stale checkpoints, log or supervised.json is left); any
    other file in ``run_dir`` is kept."""
    for name in RUN_FILES:
        new, old = stage / name, run_dir / name
        if new.is_dir():
            _remove(old)
            os.replace(new, old)
        elif new.exists():
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            os.replace(new, old)  # a file: replaced atomically
        else:
            _remove(old)


FOREGROUND_WORDS = {"map": "on the map", "score": "on the image score only", "off": "off"}


def choice_summary(meta: dict) -> str:
    """One line: the descriptor heads, foreground, location offset and windows training chose, and why."""
    from ..training.selection import SELECTION_TOLERANCE

    rows = meta.get("selection") or []

    def on(flag) -> str:
        return "on" if flag else "off"

    kept = (f"descriptor {meta['descriptor']}, foreground {FOREGROUND_WORDS[meta['foreground']]}, location offset "
            f"{on(meta.get('location_offset'))}, windows {meta['windows']}")
    if not rows:
        return f"{kept} (too few training images for a validation split, so nothing was compared)"
    scores = ", ".join(f"{r['descriptor']}/fg {r['foreground']}/lo {on(r.get('location_offset'))}/windows "
                       f"{r['windows']} {r['mean']:.3f}" for r in rows)
    return (f"{kept}: best mean of I-AUROC, P-AUROC, AUPRO, P-AP (near-ties within {SELECTION_TOLERANCE}: the "
            f"cheapest search, then the location offset; equal means: the cheapest foreground mode) on {meta['n_validation']} held-out training images with synthetic defects ({scores})")


def train_categories(data: str, dataset: str, categories: list[str] | None, out: str, variant: str,
                     overrides: dict, texture: str = "auto", texture_dir: str | None = None,
                     weights: str | None = None, device: str | None = None, progress: bool = True,
                     n_anomaly: int = 0, split_seed: int | None = None, defects: str | None = None,
                     supervised_options: dict | None = None, force: bool = False) -> dict:
    """Train every category; returns {category: model path}.

    ``n_anomaly``/``split_seed``/``defects``: supervised mode (see ``cpr-train --help``);
    ``supervised_options``: ``p_real_defect`` / ``p_paste`` for ``Detector.fit``.
    ``force``: train a category that already has ``out/<category>/model.pt`` (else OutputError
    before any work). Each run is written into a hidden folder ``out/<category>/.cpr-train.*`` and
    its ``RUN_FILES`` replace the old ones only once it is complete; other files are kept.
    """
    from ..data import load_split, validation_samples
    from ..detector import Detector

    layout, cats = resolve_categories(data, dataset, categories)
    check_run_targets(out, cats, force)
    plan = supervision_plan(data, layout, cats, n_anomaly, split_seed, defects)
    paths = {}
    for cat in cats:
        samples = load_split(data, layout, cat, "train")
        held_out = validation_samples(data, layout, cat)
        run_dir = Path(out) / cat
        cat_defects, split = plan.get(cat, (None, None))
        run_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".cpr-train.", dir=run_dir))
        try:
            det = Detector(variant, weights=weights, device=device, **overrides)
            det.fit([s.image_path for s in samples], texture=is_texture(texture), texture_dir=texture_dir,
                    run_dir=str(stage), progress=progress, category=cat, defects=cat_defects,
                    **(supervised_options or {}))
            if split:
                det.meta["supervised"]["split"] = split
            if held_out:
                det.calibrate([s.image_path for s in held_out])
            det.save(stage / "model.pt")
            (stage / "train.json").write_text(json.dumps(det.meta, indent=2))
            if det.meta["supervised"]:
                (stage / "supervised.json").write_text(json.dumps(det.meta["supervised"], indent=2))
            install_run(stage, run_dir)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        paths[cat] = run_dir / "model.pt"
        note = ""
        if det.meta["supervised"]:
            note = f", {det.meta['supervised']['n_defects']} real defects"
        metric = (f"{det.meta['steps']} steps, loss {det.meta['final_loss']:.4f}" if det.meta["steps"]
                  else "no local-metric training")
        print(f"{cat}: {len(samples)} good images{note}, {metric}, "
              f"threshold {det.threshold:.3f} ({det.meta['threshold_source']}), {det.meta['seconds']:.0f} s -> "
              f"{paths[cat]}\n"
              f"  {choice_summary(det.meta)}", flush=True)
    return paths


@cli_main("cpr-train")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    train_categories(args.data, args.dataset, args.category, args.out, args.variant, config_overrides(args),
                     args.texture, args.texture_dir, args.weights, args.device, progress=not args.quiet,
                     n_anomaly=args.n_anomaly, split_seed=args.split_seed, defects=args.defects,
                     supervised_options={"p_real_defect": args.p_real_defect, "p_paste": args.p_paste},
                     force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
