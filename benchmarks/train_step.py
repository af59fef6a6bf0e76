"""Seconds per local-metric training step, with fresh queries every step vs the reused query pool.

Usage:
    python benchmarks/train_step.py [--data ROOT --category CAT] [--steps 8] [--device cpu]

Default data: the demo set's ``coffee`` category, built into a temporary folder (offline). Both
settings train the same model from the same start for ``--steps`` steps in one process, one after
the other (``QUERY_REUSE`` 1 = every query drawn and passed through the backbone in its own step,
as before the pool; the engine's ``QUERY_REUSE``), after one warm-up step each; prints a Markdown row.
"""
from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cpr_engine import CPRConfig
from cpr_engine.backbones import build_backbone
from cpr_engine.data import load_split, read_image
from cpr_engine.preprocess import to_model_input
from cpr_engine.torch_model import CPRModel
from cpr_engine.training import trainer
from cpr_engine.training.queries import QuerySampler
from cpr_engine.training.synthesis import AnomalySource


def seconds_per_step(model: CPRModel, feats, sampler: QuerySampler, ids: np.ndarray, steps: int, reuse: int) -> float:
    """Mean wall seconds of ``steps`` training steps (after one warm-up step) with ``QUERY_REUSE = reuse``."""
    saved = trainer.QUERY_REUSE
    trainer.QUERY_REUSE = reuse
    try:
        trainer.train_local_metric(copy.deepcopy(model), feats, sampler, ids, 1, None, None, False)
        start = time.perf_counter()
        _, ran = trainer.train_local_metric(copy.deepcopy(model), feats, sampler, ids, steps, None, None, False)
        return (time.perf_counter() - start) / ran
    finally:
        trainer.QUERY_REUSE = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MVTec-layout root (default: the demo set, built offline)")
    parser.add_argument("--category", default="coffee")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = args.data
    if root is None:
        from cpr_engine.data.demo import build_demo
        root = tempfile.mkdtemp(prefix="cpr_train_step_")
        build_demo(root, categories=(args.category,))
    cfg = CPRConfig()
    images = [read_image(s.image_path) for s in load_split(Path(root), "folder", args.category, "train")]
    x = to_model_input(images, cfg.image_size)
    u8 = (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    dev = torch.device(args.device)
    model = CPRModel(cfg, build_backbone(cfg.backbone), len(u8)).to(dev).eval()
    feats = trainer._features(model, torch.from_numpy(x), dev)
    references = trainer.fit_retrieval(model, feats[0], cfg.seed).cpu().numpy()
    fg = np.ones((len(u8), cfg.image_size, cfg.image_size), np.float32)
    sampler = QuerySampler(u8, fg, False, AnomalySource(images=list(u8)), references)
    ids = np.arange(len(u8))
    before = seconds_per_step(model, feats, sampler, ids, args.steps, reuse=1)
    after = seconds_per_step(model, feats, sampler, ids, args.steps, reuse=trainer.QUERY_REUSE)
    print(f"| {args.category} ({len(u8)} images, batch {cfg.batch_size}, {cfg.backbone}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads) | {before:.2f} s | {after:.2f} s | {before / after:.2f}x |")


if __name__ == "__main__":
    main()
