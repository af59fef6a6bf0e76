"""TensorRT plan from the fp16 ONNX graph (TensorRT 10+ API: strongly typed network, named tensors).

The plan is specific to the GPU and TensorRT version it is built with, so it is built on the
target machine. Nothing here runs without ``tensorrt`` (the builder) and a CUDA GPU.
"""
from __future__ import annotations

from pathlib import Path

MAX_BATCH = 32


def tensorrt_unavailable_reason() -> str | None:
    """None when a plan can be built here, else why not (a sentence for the user)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the TensorRT builder (python package 'tensorrt') is not installed"
    try:
        import torch
        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
    except ImportError:
        return "no CUDA GPU check possible (torch not installed)"
    return None


def build_plan(onnx_path: str | Path, plan_path: str | Path, image_size: int, max_batch: int = MAX_BATCH,
               workspace_bytes: int = 1 << 30) -> Path:
    """Parse an ONNX graph into a strongly typed TensorRT network and serialize the engine.

    Precision comes from the graph itself (fp16 graph -> fp16 engine). Optimization profile: batch
    1 (min), 1 (opt) .. ``max_batch`` (max) for input ``images`` (B, 3, S, S).
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, 3, image_size, image_size), (1, 3, image_size, image_size),
                      (max_batch, 3, image_size, image_size))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(plan_path).write_bytes(bytes(plan))
    return Path(plan_path)
