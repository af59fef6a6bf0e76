"""Test-time ablation of a trained model (reporting only; never used to choose a default).

Scores the test split of one category once per setting and prints I-AUROC / P-AUROC / AUPRO / P-AP
(percent) for: the foreground product on the map and score ("fg both"), off ("fg off"), and on the
image score only ("fg score only": scores of the fg-on run, maps of the fg-off run), per K.

    python -m benchmarks.test_time_ablation RUNS/kolektorsdd/model.pt /data/kolektorsdd kolektorsdd --top-k 10 231
"""
from __future__ import annotations

import argparse

import numpy as np

from cpr_engine import Detector
from cpr_engine.data import load_split
from cpr_engine.evaluate import METRIC_COLUMNS, read_sample
from cpr_engine.metrics import compute_all


def score_all(detector, images: list[np.ndarray], batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and maps (N, S, S) of ``images`` in batches."""
    parts = [detector.score_batch(images[i:i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model"), p.add_argument("data"), p.add_argument("category")
    p.add_argument("--top-k", type=int, nargs="+", default=[10])
    args = p.parse_args()
    detector = Detector.load(args.model, device="cpu")
    loaded = [(s, *read_sample(s, detector.config.image_size)) for s in load_split(args.data, "folder", args.category, "test")]
    images = [image for _, image, _ in loaded]
    labels, masks = np.array([s.label for s, _, _ in loaded]), np.stack([m for _, _, m in loaded])
    for k in args.top_k:
        detector.model.config.top_k = k
        runs = {}
        for fg in (True, False):
            detector.model.use_foreground.fill_(fg)
            runs[fg] = score_all(detector, images)
        for name, (score_fg, map_fg) in {"fg both": (True, True), "fg off": (False, False),
                                         "fg score only": (True, False)}.items():
            metrics = compute_all(runs[score_fg][0], labels, runs[map_fg][1], masks)
            print(f"K={k:<4} {name:<14}", " ".join(f"{metrics[c] * 100:.1f}" for c in METRIC_COLUMNS), flush=True)


if __name__ == "__main__":
    main()
