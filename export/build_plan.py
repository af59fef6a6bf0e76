"""Build the TensorRT plan of an exported artifact on the machine that will run it.

    python export/build_plan.py ARTIFACT_DIR [--max-batch 32]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cpr_engine.exporter.tensorrt import MAX_BATCH, build_plan, tensorrt_unavailable_reason
from cpr_engine.contract import NETWORK_FP16_ONNX, NETWORK_ONNX, NETWORK_PLAN
from cpr_engine.runtime.artifact import add_file, read_manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="artifact folder written by cpr-export")
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help=f"largest batch of the profile ({MAX_BATCH})")
    args = p.parse_args(argv)
    manifest = read_manifest(args.artifact)
    reason = tensorrt_unavailable_reason()
    if reason:
        print(f"build_plan: cannot build a TensorRT plan here: {reason}", file=sys.stderr)
        return 2
    folder = Path(args.artifact)
    source = folder / (NETWORK_FP16_ONNX if NETWORK_FP16_ONNX in manifest["files"] else NETWORK_ONNX)
    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(source, Path(tmp) / NETWORK_PLAN, manifest["image_size"], args.max_batch)
        add_file(folder, NETWORK_PLAN, plan)
    print(f"build_plan: {folder / NETWORK_PLAN} from {source.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
