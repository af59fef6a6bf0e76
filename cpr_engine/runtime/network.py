"""Network backends of the torch-free runtime: run an artifact's graph, return its four outputs.

Every backend maps a (B, 3, S, S) float32 RGB batch in [0, 1] to the outputs of
``cpr_engine.exporter.network.NetworkOutput`` as float32 NumPy arrays: ``desc_4`` (B, D, S/4, S/4),
``desc_8`` (B, D, S/8, S/8), ``foreground`` (B, S/4, S/4), ``feat_4`` (B, C, S/4, S/4).

* :class:`OnnxRuntimeNetwork` (default): ONNX Runtime, CPU by default; with onnxruntime-gpu the
  CUDA / TensorRT execution providers run ``network_fp16.onnx`` when the artifact has it.
* :class:`TensorRTNetwork`: the artifact's ``network.plan`` through the TensorRT runtime API
  (10+: named I/O tensors, ``execute_async_v3``) with its own device buffers from cuda-python.
  Written against the official API; it has not been run in the workplace where this engine is
  developed (no TensorRT builder there), see README.

Thread safety: ONNX Runtime sessions may be run from several threads at once; the TensorRT
backend serialises calls on its one execution context with a lock.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..contract import GRAPH_INPUT, GRAPH_OUTPUTS, NETWORK_FP16_ONNX, NETWORK_ONNX, NETWORK_PLAN
from ..errors import InputError, one_line
from .artifact import ArtifactError
BACKENDS = ("auto", "onnxruntime", "tensorrt")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeNetwork:
    """The artifact's ONNX graph on ONNX Runtime.

    Args:
        folder: artifact folder (already verified); manifest: its manifest.
        providers: execution providers in order of preference; None: the GPU providers that this
            onnxruntime build has (then ``network_fp16.onnx`` when present), else CPU.
    """

    name = "onnxruntime"

    def __init__(self, folder: Path, manifest: dict, providers: list[str] | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]
        if isinstance(providers, str) or not isinstance(providers, (list, tuple)) or not providers or not all(
                isinstance(p, str) for p in providers):
            raise InputError(f"providers must be a non-empty list of ONNX Runtime execution provider names, e.g. "
                             f"['CPUExecutionProvider']; got {providers!r}")
        missing = [p for p in providers if p not in available]
        if missing:
            raise InputError(f"onnxruntime has no execution provider {missing}; available: {available}")
        on_gpu = providers[0] in GPU_PROVIDERS
        graph = NETWORK_FP16_ONNX if on_gpu and NETWORK_FP16_ONNX in manifest["files"] else NETWORK_ONNX
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ONNX Runtime's idle threads spin after each run and starve the OpenMP kernels that follow
        # (NN search ~1.5x slower on 2 cores, measured with cpr-bench); let them sleep instead
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(folder / graph), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types: not an ONNX graph, invalid graph
            raise ArtifactError(f"{folder}: {graph} is not a graph ONNX Runtime can load "
                                f"({one_line(exc)[:200]})") from exc
        names = [o.name for o in self.session.get_outputs()]
        if [o for o in GRAPH_OUTPUTS if o not in names] or len(self.session.get_inputs()) != 1 or \
                self.session.get_inputs()[0].name != GRAPH_INPUT:
            raise ArtifactError(f"{folder}: {graph} has inputs {[i.name for i in self.session.get_inputs()]} and "
                                f"outputs {names}; the artifact contract needs input {GRAPH_INPUT!r} and outputs "
                                f"{list(GRAPH_OUTPUTS)}")
        self.graph = graph
        self.providers = self.session.get_providers()
        self.input_dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """(B, 3, S, S) float32 -> {output name: float32 array}."""
        outs = self.session.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: images.astype(self.input_dtype, copy=False)})
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in zip(GRAPH_OUTPUTS, outs)}


def _cuda_check(result):
    """cuda-python returns (err, *values); raise on an error, return the values."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTNetwork:
    """The artifact's ``network.plan`` on the TensorRT runtime (needs ``tensorrt`` and ``cuda-python``).

    Device buffers are allocated for the plan's largest batch once and reused; one call copies the
    batch to the GPU, enqueues the engine and copies the four outputs back on one stream.
    """

    name = "tensorrt"

    def __init__(self, folder: Path, manifest: dict):
        reason = tensorrt_runtime_unavailable_reason(manifest)
        if reason:
            raise ArtifactError(f"{folder}: TensorRT backend unavailable: {reason}")
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine((folder / NETWORK_PLAN).read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{folder}: {NETWORK_PLAN} could not be deserialized (built for another GPU or "
                                f"TensorRT version? rebuild it on this machine with export/build_plan.py)")
        self.context = self.engine.create_execution_context()
        self.stream = _cuda_check(cudart.cudaStreamCreate())
        self.max_batch = self.engine.get_tensor_profile_shape(GRAPH_INPUT, 0)[2][0]
        self.buffers: dict[str, tuple[int, np.dtype]] = {}
        size = int(manifest["image_size"])
        self.context.set_input_shape(GRAPH_INPUT, (self.max_batch, 3, size, size))
        for name in (GRAPH_INPUT, *GRAPH_OUTPUTS):
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = self.context.get_tensor_shape(name)
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self.buffers[name] = (_cuda_check(cudart.cudaMalloc(nbytes)), dtype)
            self.context.set_tensor_address(name, self.buffers[name][0])
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """(B, 3, S, S) float32 -> {output name: float32 array}; B <= the plan's max batch."""
        if len(images) > self.max_batch:
            raise ValueError(f"TensorRT plan takes at most {self.max_batch} images per call, got {len(images)}")
        cudart, h2d, d2h = self._cudart, self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, \
            self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            ptr, dtype = self.buffers[GRAPH_INPUT]
            host = np.ascontiguousarray(images, dtype=dtype)
            self.context.set_input_shape(GRAPH_INPUT, host.shape)
            _cuda_check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, self.stream))
            if not self.context.execute_async_v3(self.stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            outs = {}
            for name in GRAPH_OUTPUTS:
                ptr, dtype = self.buffers[name]
                out = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
                _cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream))
                outs[name] = out
            _cuda_check(cudart.cudaStreamSynchronize(self.stream))
        return {k: v.astype(np.float32, copy=False) for k, v in outs.items()}


def tensorrt_runtime_unavailable_reason(manifest: dict) -> str | None:
    """None when :class:`TensorRTNetwork` can run this artifact here, else why not (a sentence)."""
    if NETWORK_PLAN not in manifest.get("files", {}):
        return f"the artifact has no {NETWORK_PLAN} (export on a machine with TensorRT and a GPU, or add one " \
               "with export/build_plan.py)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the python package 'tensorrt' is not installed"
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        return "the python package 'cuda-python' (cuda.bindings) is not installed"
    return None


def open_network(folder: Path, manifest: dict, backend: str = "auto", providers: list[str] | None = None):
    """The network backend for an artifact.

    Args:
        backend: "onnxruntime", "tensorrt", or "auto" (TensorRT when the artifact has a plan and
            the runtime is installed, else ONNX Runtime).
        providers: ONNX Runtime execution providers (see :class:`OnnxRuntimeNetwork`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "tensorrt" or (backend == "auto" and tensorrt_runtime_unavailable_reason(manifest) is None):
        return TensorRTNetwork(folder, manifest)
    return OnnxRuntimeNetwork(folder, manifest, providers)
