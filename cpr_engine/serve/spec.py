"""The tensors of a served cpr-engine model (batch dimension not included).

Inputs (send exactly one per request):
    ``image``        UINT8 (H, W, 3) RGB pixels
    ``image_bytes``  BYTES (1,) an encoded PNG / JPEG / BMP / TIFF file
Outputs:
    ``score``        FP32 (1,) image anomaly score
    ``anomaly_map``  FP32 (h, w) pixel scores at the input size divided by ``map_downscale``
    ``is_anomalous`` BOOL (1,) score > the artifact's threshold
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TensorSpec(NamedTuple):
    name: str
    dtype: type  # NumPy dtype (np.object_ stands for Triton BYTES)
    dims: tuple[int, ...]  # -1: variable


IMAGE = TensorSpec("image", np.uint8, (-1, -1, 3))
IMAGE_BYTES = TensorSpec("image_bytes", np.object_, (1,))
INPUTS = (IMAGE, IMAGE_BYTES)
OUTPUTS = (
    TensorSpec("score", np.float32, (1,)),
    TensorSpec("anomaly_map", np.float32, (-1, -1)),
    TensorSpec("is_anomalous", np.bool_, (1,)),
)
OUTPUT_NAMES = tuple(t.name for t in OUTPUTS)

#: Triton data type names (config.pbtxt ``TYPE_*`` and KServe v2 protocol) of the NumPy dtypes above.
TRITON_DTYPES = {np.uint8: "UINT8", np.object_: "BYTES", np.float32: "FP32", np.bool_: "BOOL"}


def model_name(manifest: dict) -> str:
    """Served model name of an artifact: its category (Triton-safe characters only)."""
    raw = str(manifest.get("category") or "cpr")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw)
