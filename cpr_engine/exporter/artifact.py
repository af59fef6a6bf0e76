"""``export_artifact``: a trained Detector -> one versioned, self-describing artifact folder."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..contract import (BANK_FOREGROUND, BANKS, CENTERS, GRAPH_INPUT, LOCATION_OFFSET, MEMORIES, NETWORK_FP16_ONNX, NETWORK_ONNX,
                        NETWORK_OPENCV_ONNX, NETWORK_PLAN, TRAIN_HISTS, RuntimeSettings)
from ..runtime.artifact import check_artifact_target, write_artifact
from .onnx import export_onnx, onnx_parity
from .opencv_graph import export_opencv_graph, opencv_graph_parity
from .tensorrt import build_plan, tensorrt_unavailable_reason

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-3


def _manifest(det, fp16: bool) -> dict:
    cfg, meta, bb = det.config, det.meta, det.model.backbone
    return {
        "engine_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variant": cfg.variant,
        "category": meta.get("category", ""),
        "backbone": cfg.backbone,
        "taps": list(bb.tap_names),
        "input": {"name": GRAPH_INPUT, "shape": ["B", 3, cfg.image_size, cfg.image_size], "color": "RGB",
                  "range": [0.0, 1.0], "resize": "area when shrinking, bilinear when enlarging",
                  "normalization": "inside the graph (mean/std of the backbone)"},
        **RuntimeSettings(image_size=cfg.image_size, strides=tuple(bb.strides), top_k=cfg.top_k,
                          windows=tuple(cfg.windows), kept_blocks=cfg.kept_blocks, grid=cfg.grid,
                          blur_sigma=float(cfg.blur_sigma), top_t=cfg.top_t,
                          use_foreground=bool(det.model.use_foreground), threshold=float(meta["threshold"]),
                          pixel_normal=tuple(meta.get("pixel_normal", (0.0, 1.0))),
                          foreground_on_map=cfg.foreground_on_map).to_manifest(),
        "descriptor_dims": list(det.model.descriptor_dims),
        "n_clusters": cfg.n_clusters,
        "bank_dtype": "float16" if fp16 else "float32",
        "n_train": int(meta["n_train"]),
        "config": cfg.to_dict(),
    }


def export_artifact(det, out: str | Path, fp16: bool = False, trt: str = "auto", force: bool = False,
                    check_images: np.ndarray | None = None, model_path: str | Path | None = None) -> dict:
    """Write ``out`` (a folder) from a trained ``Detector``.

    Args:
        det: trained ``cpr_engine.Detector``.
        out: artifact folder, checked before any work (``check_artifact_target``): a new or empty
            folder; an existing artifact folder only with ``force`` (replaced once the new artifact is
            complete); never another folder, a file, or a folder holding ``model_path``.
        fp16: store banks and histograms in float16 and also write ``network_fp16.onnx``.
        trt: "auto" (build a plan when TensorRT and a GPU are present), "yes" (required), "no".
        check_images: optional (B, 3, S, S) float32 real inputs for the ONNX parity check; random
            inputs are always checked too.
        model_path: the model file ``det`` was loaded from, if any: ``out`` may not be or contain its folder.
    Returns:
        report {"artifact", "onnx_max_error": {output: err}, "opencv_graph_max_error": {output: err},
        "tensorrt": "built" | reason}.
    Raises:
        OutputError (before any work) for an ``out`` that would delete or replace something of the user's.
    """
    if trt not in ("auto", "yes", "no"):
        raise ValueError(f"export_artifact: trt must be auto, yes or no, got {trt!r}")
    check_artifact_target(out, model_path, force)
    det._require_model()
    model = det.model
    size = model.config.image_size
    rng = np.random.default_rng(0)
    probe = rng.random((2, 3, size, size), dtype=np.float32)
    if check_images is not None:
        probe = np.concatenate([probe, check_images.astype(np.float32)])
    bank_dtype = np.float16 if fp16 else np.float32
    arrays = {
        **{name: bank.cpu().numpy().astype(bank_dtype) for name, bank in zip(BANKS, model.banks)},
        **{name: memory.cpu().numpy().astype(bank_dtype) for name, memory in zip(MEMORIES, model.memories)},
        LOCATION_OFFSET: model.location_offset.cpu().numpy().astype(np.float32),
        TRAIN_HISTS: model.train_hists.cpu().numpy().astype(bank_dtype),
        BANK_FOREGROUND: model.bank_fg.cpu().numpy().astype(np.float32),
        CENTERS: model.centers.cpu().numpy().astype(np.float32),  # codebook of the tail's histogram stage
    }
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {NETWORK_ONNX: export_onnx(model, Path(tmp) / NETWORK_ONNX)}
        report["onnx_max_error"] = onnx_parity(model, files[NETWORK_ONNX], probe)
        bad = {k: v for k, v in report["onnx_max_error"].items() if v > PARITY_TOLERANCE}
        if bad:
            raise RuntimeError(f"export: ONNX differs from PyTorch by more than {PARITY_TOLERANCE}: {bad}")
        files[NETWORK_OPENCV_ONNX] = export_opencv_graph(files[NETWORK_ONNX], model, Path(tmp) / NETWORK_OPENCV_ONNX)
        report["opencv_graph_max_error"] = opencv_graph_parity(model, files[NETWORK_OPENCV_ONNX], probe)
        bad = {k: v for k, v in report["opencv_graph_max_error"].items() if v > PARITY_TOLERANCE}
        if bad:
            raise RuntimeError(f"export: {NETWORK_OPENCV_ONNX} differs from PyTorch by more than {PARITY_TOLERANCE}: {bad}")
        if fp16:
            files[NETWORK_FP16_ONNX] = export_onnx(model, Path(tmp) / NETWORK_FP16_ONNX, fp16=True)
        reason = tensorrt_unavailable_reason() if trt != "no" else "not requested (--trt no)"
        if reason is None:
            source = files.get(NETWORK_FP16_ONNX, files[NETWORK_ONNX])
            files[NETWORK_PLAN] = build_plan(source, Path(tmp) / NETWORK_PLAN, size)
            report["tensorrt"] = "built"
        elif trt == "yes":
            raise RuntimeError(f"export: a TensorRT plan was required (--trt yes) but {reason}")
        else:
            report["tensorrt"] = f"no plan: {reason}"
        manifest = _manifest(det, fp16)
        manifest["onnx_max_error"] = report["onnx_max_error"]
        manifest["opencv_graph_max_error"] = report["opencv_graph_max_error"]
        report["artifact"] = str(write_artifact(out, manifest, arrays, files, force=force,
                                                   model_path=model_path))
    return report
