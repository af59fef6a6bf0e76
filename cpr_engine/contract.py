"""The artifact contract: every name an exported artifact is written and read by, defined once.

The exporter (``cpr_engine.exporter``), the torch-free runtime (``cpr_engine.runtime``), the serving
code and the tools read these names from here; the C++ runtime reads the same ones from
``csrc/runtime/contract.h``, and ``tests/test_contract.py`` compares the two files, so neither can
drift. No torch, no NumPy.

Scales: index 0 is the fine scale (stride ``strides[0]``), index 1 the coarse one.
"""
from __future__ import annotations

import dataclasses

ARTIFACT_FORMAT = "cpr-engine-artifact"
ARTIFACT_FORMAT_VERSION = 5
# version 4 has no foreground_on_map (read as True); 3 a multiplicative location weight instead of
# LOCATION_OFFSET; 2 no MEMORIES; 1 no FEATURES_OUTPUT
ARTIFACT_MIN_FORMAT_VERSION = 4

# -- files of an artifact folder -------------------------------------------------------------------
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"  # "<hex>  manifest.json"
NETWORK_ONNX = "network.onnx"  # the network part (fp32): ONNX Runtime
NETWORK_FP16_ONNX = "network_fp16.onnx"  # with --fp16: the same graph in fp16 (ONNX Runtime on a GPU, TensorRT build)
NETWORK_OPENCV_ONNX = "network_opencv.onnx"  # the OpenCV DNN subset of the graph (C++ runtime)
NETWORK_PLAN = "network.plan"  # optional TensorRT engine, built on the target GPU

# -- the network graphs ----------------------------------------------------------------------------
GRAPH_INPUT = "images"  # (B, 3, S, S) float32 RGB in [0, 1]; normalisation is inside the graph
DESCRIPTOR_OUTPUTS = ("desc_4", "desc_8")  # (B, D, h_s, w_s) unit-norm local descriptors per scale
FOREGROUND_OUTPUT = "foreground"  # (B, h_0, w_0) foreground probability at the fine scale
FEATURES_OUTPUT = "feat_4"  # (B, C, h_0, w_0) fine backbone taps: the scoring tail's codebook stage reads them
#: outputs of every graph (network.onnx, network_fp16.onnx, network_opencv.onnx, network.plan)
GRAPH_OUTPUTS = (*DESCRIPTOR_OUTPUTS, FOREGROUND_OUTPUT, FEATURES_OUTPUT)

# -- arrays (``<name>.npy``, never pickled) --------------------------------------------------------
BANKS = ("bank_4", "bank_8")  # (N, D, h_s, w_s) descriptors of the N training images per scale
TRAIN_HISTS = "train_hists"  # (N, grid^2, n_clusters + 1) block histograms of the training images
BANK_FOREGROUND = "bank_fg"  # (N, h_0, w_0) foreground of the training images
CENTERS = "centers"  # (n_clusters, C) codebook over the fine taps
MEMORIES = ("memory_4", "memory_8")  # (M_s, D, h_s, w_s) coreset of every training patch per scale, searched whole
LOCATION_OFFSET = "location_offset"  # (h_0, w_0) float32 subtracted from the fine patch scores (zeros: none)
ARRAYS = (*BANKS, TRAIN_HISTS, BANK_FOREGROUND, CENTERS, *MEMORIES, LOCATION_OFFSET)
BANK_DTYPES = ("float16", "float32")  # banks, memories and train_hists; the other arrays are float32

# -- ranges of the settings (runtime.artifact.check_settings; C++ check_settings in manifest.cpp) ----
# The largest pixel score a model gives: two scales of cosine distance (at most 2 each) minus the
# location offset, which is at least minus the mean leave-one-out patch score (itself at most 4).
PIXEL_SCORE_MAX = 8.0
# Relative slack of the threshold's upper bound, top_t x pixel_normal[1] (inputs.score_bound).
THRESHOLD_BOUND_SLACK = 1e-3


def array_file(name: str) -> str:
    """File name of an array of the artifact: ``bank_4`` -> ``bank_4.npy``."""
    return f"{name}.npy"


#: files every runtime needs (the C++ runtime reads NETWORK_OPENCV_ONNX or NETWORK_PLAN instead of NETWORK_ONNX)
REQUIRED_FILES = (NETWORK_ONNX, *(array_file(name) for name in ARRAYS))


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    """The manifest settings a runtime scores with, read once (the C++ ``Manifest`` struct holds the same).

    Field names are the manifest keys. Values are range-checked by
    ``cpr_engine.runtime.artifact.check_settings`` before this is built.
    """

    image_size: int  # S: input side of the network
    strides: tuple[int, int]  # backbone stride per scale, fine first
    top_k: int  # K training images retrieved per query
    windows: tuple[int, int]  # nearest-neighbour search window per scale (odd)
    kept_blocks: int  # histogram blocks summed by the robust block distance
    grid: int  # histogram blocks per side
    blur_sigma: float  # Gaussian blur of the anomaly map (pixels)
    top_t: int  # map values summed into the image score
    use_foreground: bool  # weight by the foreground (the fused map, or the image score only)
    threshold: float  # an image score above it is anomalous
    pixel_normal: tuple[float, float] = (0.0, 1.0)  # (median, max) pixel score of good training images
    foreground_on_map: bool = True  # with use_foreground: True weights the map and score, False the score only

    @classmethod
    def from_manifest(cls, manifest: dict) -> "RuntimeSettings":
        """The settings of a checked manifest (each key is a field name); KeyError names a missing required key."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in manifest and f.default is not dataclasses.MISSING:
                continue
            value, kind = manifest[f.name], f.type.split("[")[0]
            values[f.name] = (tuple(float(v) if "float" in f.type else int(v) for v in value) if kind == "tuple"
                              else {"int": int, "float": float, "bool": bool}[kind](value))
        return cls(**values)

    def to_manifest(self) -> dict:
        """The manifest entries of these settings (JSON types: lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        """Manifest keys without a default (an artifact without one of them is incomplete)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)
