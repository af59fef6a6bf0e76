"""Verdicts at each model's own decision threshold on a test split (reporting only; chooses nothing).

For every category: how many good test images the threshold flags and how many defective ones it
lets through. The image metrics (AUROC) do not depend on the threshold; a user's verdicts do.

    python -m benchmarks.verdicts RUNS DATA kolektorsdd [more categories]
"""
from __future__ import annotations

import argparse

import numpy as np

from cpr_engine import Detector
from cpr_engine.data import load_split
from cpr_engine.evaluate import read_sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="folder with <category>/model.pt")
    p.add_argument("data", help="data root (MVTec AD layout)")
    p.add_argument("categories", nargs="+")
    args = p.parse_args()
    for category in args.categories:
        det = Detector.load(f"{args.runs}/{category}/model.pt", device="cpu")
        samples = load_split(args.data, "folder", category, "test")
        images = [read_sample(s, det.config.image_size)[0] for s in samples]
        labels = np.array([s.label for s in samples])
        scores = np.concatenate([det.score_batch(images[i:i + 8])[0] for i in range(0, len(images), 8)])
        good, bad = scores[labels == 0], scores[labels == 1]
        print(f"{category}: threshold {det.threshold:.1f} ({det.meta.get('threshold_source', 'leave-one-out')}); "
              f"good flagged {int((good > det.threshold).sum())} / {len(good)}, defective passed "
              f"{int((bad <= det.threshold).sum())} / {len(bad)}", flush=True)


if __name__ == "__main__":
    main()
