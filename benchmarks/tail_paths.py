"""The scoring tail of an artifact two ways, side by side in one process: one native call (``csrc/tail``,
what ``ArtifactDetector`` and ``cpr::Detector`` run) and stage by stage on NumPy (``cpr_engine.tail``'s
``retrieve`` / ``local_search`` / ``postprocess`` over ``cpr_engine.ops``, the runtime's previous path).

The network runs once per batch outside the timing; both paths then score the same network outputs,
alternately, and the largest differences of their maps and scores are printed beside the medians.

    python -m benchmarks.tail_paths ARTIFACT_DIR... --images DIR [--batch 1 8] [--runs 30]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+", help="artifact folders (cpr-export)")
    p.add_argument("--images", required=True, help="folder of images (the first max(--batch) are scored)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--runs", type=int, default=30, help="timed calls per path (after 5 untimed ones)")
    args = p.parse_args()
    images, _ = as_image_list(args.images)
    for folder in args.artifacts:
        det = ArtifactDetector.load(folder)
        for batch in args.batch:
            out = det.network(to_model_input(images[:batch], det.image_size))
            descriptors, features = [out[n] for n in DESCRIPTOR_OUTPUTS], out[FEATURES_OUTPUT]
            foreground = out[FOREGROUND_OUTPUT] if det.settings.use_foreground else None

            def native():
                return tail.score(descriptors, features, foreground, det.tail_state, det.settings)

            def staged():
                index = det.retrieve(features)
                return det.postprocess(out, index, det.local_search(out, index))

            (maps, scores), (staged_maps, staged_scores) = native(), staged()
            for _ in range(5):
                native(), staged()
            times = {"native": [], "staged": []}
            for _ in range(args.runs):  # alternate, so that both see the same machine load
                times["native"].append(elapsed_ms(native))
                times["staged"].append(elapsed_ms(staged))
            n, s = np.median(times["native"]), np.median(times["staged"])
            print(f"{folder} batch {batch} (windows {det.settings.windows}): native {n:.2f} ms, staged {s:.2f} ms, "
                  f"staged / native {s / n:.2f}; max |diff| maps {np.abs(maps - staged_maps).max():.1e}, "
                  f"scores {np.abs(scores - staged_scores).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
