"""Test-time ablation behind the memory and the location weight (reporting only; chooses nothing).

For a trained model (saved before the memory existed, or any model: its own memory is not used)
and one category's test split, prints I-AUROC / P-AUROC / AUPRO / P-AP (percent) of the patch
maps from: the K retrieved images alone ("K=..."), the K images plus a greedy coreset of 1 % of all
bank patches searched whole ("K U core0.01"), and the full bank ("1-NN"); each with the map weight
"none", the foreground ("fg"), the location weight ("loc": mean / per-location mean of the training
images' leave-one-out maps over the K images), both ("fg*loc"), the location offset ("sub": that
per-location mean minus its mean, subtracted from the finest map) and the offset with the
foreground ("fg*sub").

    python -m benchmarks.memory_ablation RUNS/kolektorsdd/model.pt /data/kolektorsdd kolektorsdd
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cpr_engine import Detector, tail
from cpr_engine.baseline import full_bank_search
from cpr_engine.data import load_split
from cpr_engine.evaluate import METRIC_COLUMNS, read_sample
from cpr_engine.metrics import compute_all
from cpr_engine.preprocess import to_model_input
from cpr_engine.reference import postprocess
from cpr_engine.reference.scoring import fuse_scales
from cpr_engine.training.memory import greedy_coreset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model"), p.add_argument("data"), p.add_argument("category")
    p.add_argument("--fraction", type=float, nargs="+", default=[0.01],
                   help="coreset share of all bank patches: one for both scales, or fine and coarse")
    p.add_argument("--no-full-bank", action="store_true", help="skip the full-bank (1-NN) rows (minutes)")
    args = p.parse_args()
    det = Detector.load(args.model, device="cpu")
    model, cfg = det.model, det.model.config
    windows = list(cfg.windows)

    def encode(images, exclude=None):
        descs, index, fg = [[], []], [], []
        with torch.no_grad():
            for i in range(0, len(images), 8):
                feats = model.features(torch.from_numpy(to_model_input(images[i:i + 8], cfg.image_size)))
                for s, d in enumerate(model.descriptors(feats)):
                    descs[s].append(d.contiguous())
                ex = None if exclude is None else torch.as_tensor(exclude[i:i + 8])
                index.append(model.retrieve(feats[0], ex))
                fg.append(model.foreground(feats[0], enabled=True))
        return [torch.cat(d) for d in descs], torch.cat(index), torch.cat(fg)

    def near(descs, index):
        return [tail.ops.nn_search([descs[s]], [model.banks[s]], index, [windows[s]])[0] for s in range(2)]

    loaded = [(s, *read_sample(s, cfg.image_size)) for s in load_split(args.data, "folder", args.category, "test")]
    labels, masks = np.array([s.label for s, _, _ in loaded]), np.stack([m for _, _, m in loaded])
    descs, index, fg = encode([image for _, image, _ in loaded])
    train = [read_sample(s, cfg.image_size)[0] for s in load_split(args.data, "folder", args.category, "train")]
    train_descs, train_index, _ = encode(train, np.arange(len(train)))
    mean_map = fuse_scales(near(train_descs, train_index)).mean(0)
    location = mean_map.mean() / mean_map.clamp_min(1e-6)
    offset = mean_map - mean_map.mean()
    fused_fg = torch.maximum(fg, model.bank_fg[index].amax(1))

    def whole(descs_s, patches):  # 8 queries at a time: bounded memory
        return torch.cat([full_bank_search(descs_s[i:i + 8], patches) for i in range(0, len(descs_s), 8)])

    def rows(local, name):
        shifted = [(local[0] - offset).clamp_min(0), *local[1:]]
        for weight_name, maps_in, weight in (("none", local, None), ("fg", local, fused_fg),
                                             ("loc", local, location.expand_as(fused_fg)),
                                             ("fg*loc", local, fused_fg * location), ("sub", shifted, None),
                                             ("fg*sub", shifted, fused_fg)):
            maps, scores = postprocess(maps_in, weight, cfg.image_size, cfg.blur_sigma, cfg.top_t)
            r = compute_all(scores.numpy(), labels, maps.numpy(), masks)
            print(f"{name:<16} {weight_name:<7}", " ".join(f"{r[c] * 100:.1f}" for c in METRIC_COLUMNS), flush=True)

    base = near(descs, index)
    rows(base, f"K={cfg.top_k}")
    flat = [b.permute(0, 2, 3, 1).reshape(-1, b.shape[1]).float() for b in model.banks]
    start = time.time()
    fractions = (args.fraction * 2)[:2]
    cores = [f[greedy_coreset(f, max(1, int(share * len(f))))] for f, share in zip(flat, fractions)]
    name = "core" + "/".join(map(str, dict.fromkeys(fractions)))
    print(f"{name}: {time.time() - start:.0f} s", flush=True)
    rows([torch.minimum(base[s], whole(descs[s], cores[s])) for s in range(2)], f"K U {name}")
    if not args.no_full_bank:
        rows([whole(descs[s], flat[s]) for s in range(2)], "1-NN")


if __name__ == "__main__":
    main()
