"""ONNX export of the network part, with ``onnx.checker`` and a parity check against PyTorch."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..torch_model import CPRModel
from ..contract import GRAPH_INPUT, GRAPH_OUTPUTS
from .network import NetworkPart

OPSET = 17


def export_onnx(model: CPRModel, path: str | Path, fp16: bool = False) -> Path:
    """Write the network part of ``model`` as ONNX and validate it with ``onnx.checker``.

    Args:
        model: a trained CPRModel (left untouched: a copy is exported).
        path: output ``.onnx`` file.
        fp16: export the graph in float16 (input ``images`` then float16 too), for TensorRT's
            strongly typed networks.
    Returns:
        ``path``. Input ``images`` (B, 3, S, S) in [0, 1]; outputs ``contract.GRAPH_OUTPUTS``; the batch
        axis is dynamic.
    """
    import onnx

    net = NetworkPart(model)
    dtype = torch.float16 if fp16 else torch.float32
    net = net.to(dtype)
    size = model.config.image_size
    example = torch.rand(1, 3, size, size, dtype=dtype)
    axes = {GRAPH_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in GRAPH_OUTPUTS}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[GRAPH_INPUT], output_names=list(GRAPH_OUTPUTS), dynamic_axes=axes)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return Path(path)


def onnx_parity(model: CPRModel, path: str | Path, images: np.ndarray) -> dict[str, float]:
    """Max absolute difference per output between onnxruntime (CPU) and PyTorch.

    Args:
        images: (B, 3, S, S) float32 in [0, 1].
    Returns:
        {output name: max |onnx - torch|}.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    got = session.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: images.astype(dtype)})
    with torch.no_grad():
        ref = NetworkPart(model)(torch.from_numpy(images.astype(np.float32)))
    return {name: float(np.abs(g.astype(np.float32) - r.numpy()).max()) for name, g, r in zip(GRAPH_OUTPUTS, got, ref)}
