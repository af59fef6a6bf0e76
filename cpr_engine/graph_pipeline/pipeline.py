"""``GraphPipeline``: a trained ``Detector`` as one fixed-shape pipeline, captured in a CUDA graph on a GPU.

uint8 images -> on-device preprocessing (OpenCV's resize as matrix products, ``resize.py``) -> network
(float16 on CUDA) -> the scoring tail (``tail.score``: on CUDA one call into the native tail, which
enqueues its kernels without a host synchronisation) -> scores and maps, optionally resized to the
input size on the device.
Batch size and image size are fixed at construction, every buffer is allocated once (pinned on the
host), and on CUDA the device part is captured once, after a warm-up, and replayed: nothing inside
it synchronises with the host. On CPU the same code runs eagerly in float32 without a graph, and
then equals ``Detector.score_batch`` (``tests/test_gpu_pipeline.py``).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ops, tail
from ..inputs import Prediction, verdict
from ..preprocess import check_image_sides, resize_map
from .network import HalfNetwork
from .resize import image_matrices, map_matrices, resize, round_to_uint8

MAP_SIZES = ("model", "input")
WARMUP_RUNS = 3  # eager runs before capture: cuDNN/cuBLAS handles and workspaces, first-call logging


class GraphPipeline:
    """Fixed-shape CPR inference of a trained ``Detector`` on its device.

    Args:
        detector: a trained ``Detector`` (its model and device are used; the model is not modified).
        batch_size: images per call, B.
        image_size: (H, W) of every input image.
        fp16: run the network (backbone, LRB) in float16; default True on CUDA. CPU: False only.
            Retrieval, NN search and post-processing stay float32.
        graph: capture the device part in a CUDA graph; default True on CUDA. CPU: False only.
        map_size: "model": maps (B, S, S) at the model's input size S; "input": (B, H, W), resized on
            the device as ``Detector.predict`` resizes them.
    Attributes:
        host_input: (B, H, W, 3) uint8 ndarray, a view of the (pinned) host input buffer; write
            images into it and call ``run()`` to skip one copy.
    """

    def __init__(self, detector, batch_size: int, image_size: tuple[int, int], *, fp16: bool | None = None,
                 graph: bool | None = None, map_size: str = "model"):
        detector._require_model()
        self.device = torch.device(detector.device)
        cuda = self.device.type == "cuda"
        fp16 = cuda if fp16 is None else bool(fp16)
        graph = cuda if graph is None else bool(graph)
        height, width = (int(v) for v in image_size)
        if batch_size < 1 or height < 1 or width < 1:
            raise ValueError(f"GraphPipeline: batch_size and image_size must be >= 1; got {batch_size}, {image_size}")
        check_image_sides([(height, width)], detector.min_image_side, detector.config.image_size)
        if map_size not in MAP_SIZES:
            raise ValueError(f"GraphPipeline: map_size must be one of {MAP_SIZES}; got {map_size!r}")
        if not cuda and (fp16 or graph):
            raise ValueError(f"GraphPipeline: fp16 and graph need a CUDA device; the detector is on {self.device}")
        if graph and not ops.cuda_available():
            raise RuntimeError("GraphPipeline: graph=True needs cpr_engine._C built with CUDA kernels "
                               f"({ops.native_error() or 'built without CUDA'}); rebuild with `pip install -e .`")
        self.model = detector.model.eval()
        self.config = detector.config
        self.threshold = detector.threshold  # for predict's verdicts
        self.batch_size, self.image_size, self.fp16, self.graph = int(batch_size), (height, width), fp16, graph
        self.network = HalfNetwork(self.model) if fp16 else self.model
        self._dtype = torch.float16 if fp16 else torch.float32
        # cuDNN prefers NHWC in half precision; float32 keeps score_batch's NCHW (identical results on CPU)
        self._memory_format = torch.channels_last if fp16 else torch.contiguous_format
        self._foreground = bool(self.model.use_foreground)  # read once: reading it later would synchronise

        size = self.config.image_size
        self._resize_in = None
        if (height, width) != (size, size):
            rows, cols, ties_up = image_matrices(height, width, size)
            self._resize_in = (self._tensor(rows), self._tensor(cols.T), ties_up)
        self._resize_out = None
        map_shape = (size, size)
        if map_size == "input":
            map_shape = (height, width)
            if map_shape != (size, size):
                rows, cols = map_matrices(size, height, width)
                self._resize_out = (self._tensor(rows), self._tensor(cols.T))

        pinned = dict(pin_memory=True) if cuda else {}
        b = self.batch_size
        self._host_input = torch.empty(b, height, width, 3, dtype=torch.uint8, **pinned)
        self._host_scores = torch.empty(b, dtype=torch.float32, **pinned)
        self._host_maps = torch.empty(b, *map_shape, dtype=torch.float32, **pinned)
        self.host_input = self._host_input.numpy()
        self._input = torch.zeros(b, height, width, 3, dtype=torch.uint8, device=self.device)
        self._out: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cuda_graph = self._capture() if graph else None

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    # -- the device part -------------------------------------------------------------------------

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 on the device -> (B, 3, S, S) network input in [0, 1] (float16 or float32).

        Equals ``preprocess.to_model_input`` (OpenCV) up to the rounding described in ``gpu/resize.py``.
        """
        x = images.permute(0, 3, 1, 2).float()
        if self._resize_in is not None:
            rows, cols_t, ties_up = self._resize_in
            x = round_to_uint8(resize(x, rows, cols_t), ties_up)
        return (x / 255).to(self._dtype, memory_format=self._memory_format)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The device part, eager: (B, H, W, 3) uint8 on the device -> scores (B,) float32, maps (B, h, w) float32.

        (h, w) is (S, S) or the input size (``map_size``). Enqueues work only: no host synchronisation.
        """
        model, cfg = self.model, self.config
        with torch.no_grad():
            feats = self.network.features(self.preprocess(images))
            descs = [d.float() for d in self.network.descriptors(feats)]
            feature4 = feats[0].float()
            maps, scores = tail.score(descs, feature4, model.foreground(feature4, self._foreground),
                                      model.tail_state, cfg, impl=model.ops_impl, check_index=False)
            if self._resize_out is not None:
                maps = resize(maps, *self._resize_out)
        return scores, maps

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream, then capture ``forward`` on the static input buffer."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):
                self.forward(self._input)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self.forward(self._input)
        return graph

    # -- entry points ----------------------------------------------------------------------------

    def _check(self, shape: tuple, dtype: str) -> None:
        want = (self.batch_size, *self.image_size, 3)
        head = f"GraphPipeline: expected a {want} uint8 batch (B, H, W, RGB)"
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"{head}; got shape {shape}: need 4 dimensions and 3 channels")
        if shape[0] != self.batch_size:
            raise ValueError(f"{head}; got batch size {shape[0]} (fixed at construction)")
        if tuple(shape[1:3]) != self.image_size:
            raise ValueError(f"{head}; got image size {tuple(shape[1:3])} (fixed at construction)")
        if dtype != "uint8":
            raise ValueError(f"{head}; got dtype {dtype}")

    def upload(self, images: np.ndarray | None = None) -> None:
        """Copy a (B, H, W, 3) uint8 RGB batch into the pinned host buffer (None: ``host_input`` is
        already filled), then enqueue its copy to the device."""
        if images is not None:
            if not isinstance(images, np.ndarray):
                raise TypeError(f"GraphPipeline: images must be a numpy.ndarray; got {type(images).__name__}")
            self._check(images.shape, str(images.dtype))
            np.copyto(self.host_input, images)
        self._input.copy_(self._host_input, non_blocking=True)

    def launch(self) -> None:
        """Enqueue the device part on the uploaded batch: one graph replay, or the eager ops."""
        if self._cuda_graph is not None:
            self._cuda_graph.replay()
        else:
            self._out = self.forward(self._input)

    def download(self) -> tuple[np.ndarray, np.ndarray]:
        """Copy the results to the pinned host buffers and wait for them.

        Returns:
            scores (B,) float32, maps (B, h, w) float32: views of the host buffers, overwritten by the
            next call (copy them to keep them).
        """
        scores, maps = self._out
        self._host_scores.copy_(scores, non_blocking=True)
        self._host_maps.copy_(maps, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return self._host_scores.numpy(), self._host_maps.numpy()

    def run(self, images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Host in, host out: (B, H, W, 3) uint8 RGB ndarray (None: ``host_input`` as filled) ->
        scores (B,) float32, maps (B, h, w) float32 (views of the host buffers, see ``download``)."""
        self.upload(images)
        self.launch()
        return self.download()

    def predict(self, images: np.ndarray | None = None) -> list[Prediction]:
        """``run`` as ``Prediction``s, like ``Detector.predict`` of the same batch: scores, maps at the input
        size (new arrays) and verdicts at the detector's threshold (failing closed on NaN/inf)."""
        scores, maps = self.run(images)
        size = self.image_size
        return [Prediction(float(s), m.copy() if m.shape == size else resize_map(m, size),
                           verdict(s, self.threshold, m, index=i)) for i, (s, m) in enumerate(zip(scores, maps))]

    def run_device(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Device in, device out: (B, H, W, 3) uint8 tensor on the pipeline's device -> scores (B,)
        float32, maps (B, h, w) float32 on the device (the pipeline's output buffers, overwritten by the
        next call). Does not synchronise: the results are ready once the current stream reaches them."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"GraphPipeline.run_device: images must be a torch.Tensor; got {type(images).__name__}")
        self._check(tuple(images.shape), str(images.dtype).replace("torch.", ""))
        if images.device != self._input.device:
            raise ValueError(f"GraphPipeline.run_device: images are on {images.device}, the pipeline on "
                             f"{self._input.device}")
        self._input.copy_(images)
        self.launch()
        return self._out
