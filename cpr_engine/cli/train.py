"""cpr-train: train one CPR model per category on good images only."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (add_data_args, add_device_args, add_train_args, config_overrides, is_texture,
                     resolve_categories, setup_logging)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-train",
        description="Train CPR (Cascade Patch Retrieval) on the good training images of each category. "
                    "Writes OUT/<category>/model.pt, config.json, train.json, train.log and checkpoints/. "
                    "No test image is read.")
    add_data_args(p)
    add_train_args(p)
    add_device_args(p)
    p.add_argument("--out", default="runs", help="run directory (default ./runs)")
    return p


def train_categories(data: str, dataset: str, categories: list[str] | None, out: str, variant: str,
                     overrides: dict, texture: str = "auto", texture_dir: str | None = None,
                     weights: str | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Train every category; returns {category: model path}."""
    from ..data import load_split
    from ..detector import Detector

    layout, cats = resolve_categories(data, dataset, categories)
    paths = {}
    for cat in cats:
        samples = load_split(data, layout, cat, "train")
        run_dir = Path(out) / cat
        det = Detector(variant, weights=weights, device=device, **overrides)
        det.fit([s.image_path for s in samples], texture=is_texture(cat, texture), texture_dir=texture_dir,
                run_dir=str(run_dir), progress=progress, category=cat)
        paths[cat] = det.save(run_dir / "model.pt")
        (run_dir / "train.json").write_text(json.dumps(det.meta, indent=2))
        print(f"{cat}: {len(samples)} good images, {det.meta['steps']} steps, loss {det.meta['final_loss']:.4f}, "
              f"threshold {det.threshold:.3f}, {det.meta['seconds']:.0f} s -> {paths[cat]}", flush=True)
    return paths


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    train_categories(args.data, args.dataset, args.category, args.out, args.variant, config_overrides(args),
                     args.texture, args.texture_dir, args.weights, args.device, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
