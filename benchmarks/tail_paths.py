"""The scoring tail two ways, side by side in one process: one native call (``csrc/tail``, what
``ArtifactDetector``, ``cpr::Detector`` and a ``Detector`` on the CPU run) and stage by stage
(``cpr_engine.tail``'s ``retrieve`` / ``local_search`` / ``postprocess`` over ``cpr_engine.ops``, their
previous path), on an artifact folder (NumPy) or a model.pt (torch CPU tensors).

The network runs once per batch outside the timing; both paths then score the same network outputs,
alternately, and the largest differences of their maps and scores are printed beside the medians.

    python -m benchmarks.tail_paths ARTIFACT_DIR_OR_MODEL_PT... --images DIR [--batch 1 8] [--runs 30]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from cpr_engine import tail
from cpr_engine.contract import DESCRIPTOR_OUTPUTS, FEATURES_OUTPUT, FOREGROUND_OUTPUT
from cpr_engine.inputs import as_image_list
from cpr_engine.preprocess import to_model_input
from cpr_engine.runtime.detector import ArtifactDetector


def elapsed_ms(fn) -> float:
    """Wall time of one ``fn()`` call in milliseconds."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def tail_paths(path: str, images: list[np.ndarray]):
    """(native, staged): two callables scoring the network outputs of ``images`` with the model at ``path``."""
    if path.endswith(".pt"):
        import torch

        from cpr_engine import Detector

        model = Detector.load(path, device="cpu").model
        with torch.no_grad():
            feats = model.features(torch.from_numpy(to_model_input(images, model.config.image_size)))
            descriptors, features, foreground = model.descriptors(feats), feats[0], model.foreground(feats[0])
        state, settings = model.tail_state, model.config
    else:
        det = ArtifactDetector.load(path)
        out = det.network(to_model_input(images, det.image_size))
        descriptors, features = [out[n] for n in DESCRIPTOR_OUTPUTS], out[FEATURES_OUTPUT]
        foreground = out[FOREGROUND_OUTPUT] if det.settings.use_foreground else None
        state, settings = det.tail_state, det.settings

    def native():
        return tail.score(descriptors, features, foreground, state, settings)

    def staged():
        index = tail.retrieve(features, state, settings)
        return tail.postprocess(tail.local_search(descriptors, index, state, settings), foreground, index, state,
                                settings)

    return native, staged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="artifact folders (cpr-export) or model.pt files (cpr-train)")
    p.add_argument("--images", required=True, help="folder of images (the first max(--batch) are scored)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--runs", type=int, default=30, help="timed calls per path (after 5 untimed ones)")
    args = p.parse_args()
    images, _ = as_image_list(args.images)
    for path in args.models:
        for batch in args.batch:
            native, staged = tail_paths(path, images[:batch])
            (maps, scores), (staged_maps, staged_scores) = (np.asarray(a) for a in native()), (
                np.asarray(a) for a in staged())
            for _ in range(5):
                native(), staged()
            times = {"native": [], "staged": []}
            for _ in range(args.runs):  # alternate, so that both see the same machine load
                times["native"].append(elapsed_ms(native))
                times["staged"].append(elapsed_ms(staged))
            n, s = np.median(times["native"]), np.median(times["staged"])
            print(f"{path} batch {batch}: native {n:.2f} ms, staged {s:.2f} ms, "
                  f"staged / native {s / n:.2f}; max |diff| maps {np.abs(maps - staged_maps).max():.1e}, "
                  f"scores {np.abs(scores - staged_scores).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
