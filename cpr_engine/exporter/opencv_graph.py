"""``network_opencv.onnx``: the network part in the ONNX subset OpenCV DNN imports (the C++ runtime).

OpenCV 4.6 DNN (Debian 12) cannot import ``network.onnx`` as exported: dynamic "same" padding
(Shape/Gather/ConstantOfShape chains), an Identity of an initializer, Pad with an empty optional
input, Clip with min/max as inputs and Einsum. This writes ``network_opencv.onnx`` (batch 1,
constant-folded, Clip min/max as attributes, the foreground Einsum as a 1x1 Conv), with the same
outputs as ``network.onnx`` (``contract.GRAPH_OUTPUTS``). Needs ``onnx`` and ``onnxruntime``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..contract import GRAPH_INPUT, GRAPH_OUTPUTS


def _fold_batch_1(src: Path, dst: Path) -> None:
    """Fix the batch axis to 1 and constant-fold the shape arithmetic with onnxruntime."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(dst))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(dst), options, providers=["CPUExecutionProvider"])


def _opencv_nodes(graph, side: int) -> list:
    """The graph's nodes rewritten into ops OpenCV 4.6 imports (see the module docstring)."""
    from onnx import helper, numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    nodes = []
    for node in graph.node:
        while node.input and node.input[-1] == "":
            node.input.pop()
        if node.op_type == "Clip" and len(node.input) > 1:
            bounds = [float(values[name]) if name else None for name in list(node.input[1:]) + [""]][:2]
            del node.input[1:]
            node.attribute.extend(helper.make_attribute(k, v) for k, v in zip(("min", "max"), bounds) if v is not None)
        if node.op_type == "Einsum":  # bchw,c->bhw: foreground logits
            features, weight = node.input
            graph.initializer.extend([
                numpy_helper.from_array(values[weight].reshape(1, -1, 1, 1).astype(np.float32), "fg_conv_weight"),
                numpy_helper.from_array(np.array([1, side, side], np.int64), "fg_shape")])
            nodes += [helper.make_node("Conv", [features, "fg_conv_weight"], ["fg_conv"], kernel_shape=[1, 1]),
                      helper.make_node("Reshape", ["fg_conv", "fg_shape"], [node.output[0]])]
            continue
        nodes.append(node)
    return nodes


def _prune(nodes: list, outputs: tuple[str, ...]) -> list:
    """Nodes that the outputs depend on, in their original order."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if needed & set(node.output):
            kept.append(node)
            needed |= set(node.input)
    return kept[::-1]


def export_opencv_graph(network_onnx: str | Path, model, path: str | Path) -> Path:
    """Write the OpenCV DNN graph of a trained ``CPRModel`` from its exported ``network.onnx``.

    Args:
        network_onnx: the fp32 graph written by :func:`cpr_engine.exporter.onnx.export_onnx`.
        model: the CPRModel it came from (sizes of the outputs).
        path: output file.
    Returns:
        ``path``: input ``images`` (1, 3, S, S) float32; outputs ``desc_4`` (1, D, S/4, S/4),
        ``desc_8`` (1, D, S/8, S/8), ``foreground`` (1, S/4, S/4), ``feat_4`` (1, C4, S/4, S/4).
    """
    import onnx
    from onnx import helper

    side, (d4, d8) = model.config.image_size // model.backbone.strides[0], model.descriptor_dims
    shapes = [(1, d4, side, side), (1, d8, side // 2, side // 2), (1, side, side), (1, model.centers.shape[1], side, side)]
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        _fold_batch_1(Path(network_onnx), folded)
        graph = onnx.load(str(folded)).graph
    nodes = _prune(_opencv_nodes(graph, side), GRAPH_OUTPUTS)
    used = {name for node in nodes for name in node.input}
    out_graph = helper.make_graph(
        nodes, "cpr_opencv", list(graph.input),
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape) for name, shape in zip(GRAPH_OUTPUTS, shapes)],
        [init for init in graph.initializer if init.name in used])
    # not onnx.checker-valid: Clip keeps min/max as attributes (opset 6 style), which OpenCV 4.6 needs
    onnx.save(helper.make_model(out_graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Path(path)


def opencv_graph_parity(model, path: str | Path, images: np.ndarray) -> dict[str, float]:
    """Max |OpenCV DNN run of the graph - PyTorch| per output, over ``images`` one at a time.

    Args:
        model: the CPRModel the graph came from.
        images: (B, 3, S, S) float32 in [0, 1].
    """
    import cv2
    import torch

    from ..foreground import foreground_map
    from .network import NetworkPart

    model = NetworkPart(model).model  # a CPU float32 copy in eval mode
    net = cv2.dnn.readNetFromONNX(str(path))
    worst = dict.fromkeys(GRAPH_OUTPUTS, 0.0)
    for image in images:
        net.setInput(np.ascontiguousarray(image[None], dtype=np.float32), GRAPH_INPUT)
        got = net.forward(list(GRAPH_OUTPUTS))
        with torch.no_grad():
            feats = model.features(torch.from_numpy(image[None].astype(np.float32)))
            desc_4, desc_8 = model.descriptors(feats)
            want = (desc_4, desc_8, foreground_map(feats[0], model.fg_weight, model.fg_bias), feats[0])
        for name, g, w in zip(GRAPH_OUTPUTS, got, want):
            w = w.float().numpy()
            worst[name] = max(worst[name], float(np.abs(g.reshape(w.shape) - w).max()))
    return worst
