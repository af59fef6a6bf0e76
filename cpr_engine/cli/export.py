"""cpr-export: a trained model.pt -> a deployable artifact folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_debug_arg, cli_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-export",
        description="Export a model.pt (from cpr-train) to one versioned, self-describing artifact folder: "
                    "manifest.json (settings, format and engine versions, SHA-256 of every file), network.onnx "
                    "(backbone taps + Local Retrieval Branch + foreground + codebook histograms), the "
                    "descriptor bank and training histograms as .npy, and a TensorRT plan when TensorRT and a "
                    "GPU are present. The ONNX graph is checked with onnx.checker and against PyTorch.")
    p.add_argument("model", help="model.pt written by cpr-train / Detector.save")
    p.add_argument("-o", "--out", default=None,
                   help="artifact folder (default: <model folder>/artifact); a new or empty folder, or an "
                        "earlier artifact folder with --force; never the model's own folder or one above it")
    p.add_argument("--fp16", action="store_true",
                   help="store bank and histograms in float16 (half the size) and add network_fp16.onnx "
                        "(the input of the TensorRT fp16 plan)")
    p.add_argument("--trt", choices=("auto", "yes", "no"), default="auto",
                   help="TensorRT plan: auto = build when 'tensorrt' and a CUDA GPU are present (default)")
    p.add_argument("--check-images", default=None,
                   help="folder of real images for the ONNX-vs-PyTorch check (random inputs are always used)")
    p.add_argument("--triton-repo", default=None, metavar="DIR",
                   help="also add the artifact to a Triton model repository DIR (config.pbtxt, version folder, "
                        "model.py for the Python backend) that a stock `tritonserver --model-repository DIR` "
                        "loads; the server's Python must import cpr_engine (pip install cpr-engine[serve])")
    p.add_argument("--force", action="store_true",
                   help="replace an existing artifact folder (one that holds only an artifact: any other folder is "
                        "refused), and the model in --triton-repo instead of adding a version (only when its "
                        "folder holds nothing but a Triton model)")
    p.add_argument("--quiet", action="store_true", help="less logging")
    add_debug_arg(p)
    return p


def check_triton_target(repo: str | Path, category: str, force: bool) -> None:
    """Refuse a --triton-repo that ``write_repository`` must not write, before any export work.

    ``write_repository(..., force=True)`` replaces ``repo/<model name>``: allowed only for an empty
    folder or one it made itself (see :func:`cpr_engine.triton_repo.writer.check_repository`, which
    ``write_repository`` calls again). Without ``force`` nothing is replaced (a version is added).
    """
    from ..serve.spec import model_name
    from ..triton_repo.writer import check_repository

    check_repository(repo, [model_name({"category": category})], force)


def onnx_errors(report: dict) -> str:
    """``export_artifact``'s ONNX-vs-PyTorch maximum errors as one line: "desc_4 2.4e-07, ..."."""
    return ", ".join(f"{k} {v:.1e}" for k, v in report["onnx_max_error"].items())


@cli_main("cpr-export")
def main(argv=None) -> int:
    from ..data import read_image
    from ..data.samples import list_image_files
    from ..detector import Detector
    from ..errors import InputError
    from ..exporter import export_artifact
    from ..exporter.tensorrt import tensorrt_unavailable_reason
    from ..preprocess import to_model_input
    from ..runtime.artifact import check_artifact_target

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    if Path(args.model).is_dir():
        raise InputError(f"{args.model} is a folder (an exported artifact?); cpr-export reads the model.pt file "
                         "that cpr-train wrote")
    if args.trt == "yes" and tensorrt_unavailable_reason():
        raise InputError(f"--trt yes: a TensorRT plan cannot be built here: {tensorrt_unavailable_reason()}")
    out = Path(args.out) if args.out else Path(args.model).parent / "artifact"
    check_artifact_target(out, args.model, args.force)  # before any work: nothing of the user's is replaced
    det = Detector.load(args.model, device="cpu")
    if args.triton_repo:
        check_triton_target(args.triton_repo, getattr(det, "meta", {}).get("category", ""), args.force)
    check = None
    if args.check_images:
        images = [read_image(p) for p in list_image_files(args.check_images)[:4]]
        check = to_model_input(images, det.config.image_size)
    report = export_artifact(det, out, fp16=args.fp16, trt=args.trt, force=args.force, check_images=check,
                             model_path=args.model)
    print(f"artifact: {report['artifact']}\nONNX vs PyTorch max |error|: {onnx_errors(report)}\n"
          f"TensorRT: {report['tensorrt']}")
    if args.triton_repo:
        from ..triton_repo import write_repository

        for version_dir in write_repository([report["artifact"]], args.triton_repo, force=args.force):
            print(f"Triton model: {version_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
