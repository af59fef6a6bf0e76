"""``ArtifactDetector``: run an exported artifact without torch (NumPy, OpenCV, ``cpr_engine._C``, a network backend).

The pipeline is the one of ``CPRModel.forward``: the graph gives descriptors, foreground and the
fine taps; the scoring tail does the codebook histograms, histogram matching, top-K, the
location-restricted NN search against the stored bank and memory, the location offset, the
foreground and the post-processing, in one native call (``cpr_engine.tail.score`` on NumPy arrays:
``csrc/tail``, the tail ``cpr::Detector`` runs; ``benchmarks/tail_paths.py`` runs its stages one by
one beside it). ``cpr_engine.Detector.load(folder)``
returns one of these for an artifact folder.

Thread safety: one ``ArtifactDetector`` may be shared by several threads calling :meth:`predict`
at once (the kernels keep no state, ONNX Runtime sessions are thread-safe, the TensorRT backend
locks its execution context; the tail's one-OpenBLAS-thread setting for small whole-map searches is
process-wide and restored after each, so concurrent calls can change each other's speed, never
their results); ``tests/test_runtime.py`` checks it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import ops, tail
from ..allocator import keep_freed_buffers
from ..contract import (BANK_FOREGROUND, BANKS, CENTERS, DESCRIPTOR_OUTPUTS, FEATURES_OUTPUT, FOREGROUND_OUTPUT,
                        LOCATION_OFFSET, MEMORIES, REQUIRED_FILES, TRAIN_HISTS, RuntimeSettings, array_file)
from ..inputs import predict_batched
from ..preprocess import to_model_input
from .artifact import ArtifactError, load_array, read_manifest
from .network import open_network


class ArtifactDetector:
    """A trained CPR model loaded from an artifact folder (``cpr-export``); inference only.

    Use :meth:`load`. Attributes: ``manifest`` (dict, as read), ``settings`` (the
    :class:`~cpr_engine.contract.RuntimeSettings` it scores with), ``network`` (the backend:
    ``.name`` is "onnxruntime" or "tensorrt"), ``threshold``.
    """

    def __init__(self, folder: Path, manifest: dict, network):
        keep_freed_buffers()  # per-image buffers stay in the heap (cpr_engine.allocator)
        self.folder, self.manifest, self.network = folder, manifest, network
        self.settings = RuntimeSettings.from_manifest(manifest)
        self.image_size = self.settings.image_size
        self.banks = [load_array(folder, name) for name in BANKS]
        self.train_hists = np.ascontiguousarray(load_array(folder, TRAIN_HISTS, mmap=False), dtype=np.float32)
        self.bank_fg = load_array(folder, BANK_FOREGROUND, mmap=False).astype(np.float32, copy=False)
        self.centers = np.ascontiguousarray(load_array(folder, CENTERS, mmap=False), dtype=np.float32)
        self.memories = [load_array(folder, name, mmap=False) for name in MEMORIES]
        self.location_offset = np.ascontiguousarray(load_array(folder, LOCATION_OFFSET, mmap=False), dtype=np.float32)
        self._check_arrays()
        self.memory_indices = [np.arange(len(memory), dtype=np.int64)[None] for memory in self.memories]

    @classmethod
    def load(cls, folder: str | Path, backend: str = "auto", providers: list[str] | None = None,
             verify: bool = True) -> "ArtifactDetector":
        """Open an artifact folder.

        Args:
            folder: written by ``cpr-export``.
            backend: "auto" | "onnxruntime" | "tensorrt" (see :func:`cpr_engine.runtime.network.open_network`).
            providers: ONNX Runtime execution providers, e.g. ``["CPUExecutionProvider"]``.
            verify: check the SHA-256 of every file (default; refuses tampered or corrupted files).
        Raises:
            ArtifactError naming the folder and the problem (not an artifact, newer format version,
            missing file, checksum mismatch of a file or of manifest.json, a setting out of the range
            the engine can run, settings or arrays that do not fit together, NaN/inf in an array);
            RuntimeError when the compiled kernels are missing.
        """
        if not ops.native_available():
            raise RuntimeError(f"the artifact runtime needs the compiled kernels cpr_engine._C, which did not "
                               f"import ({ops.native_error()}); reinstall cpr-engine with a C++ compiler present")
        folder = Path(folder)
        manifest = read_manifest(folder, verify=verify)
        missing = [f for f in REQUIRED_FILES if f not in manifest["files"]]
        unset = [k for k in RuntimeSettings.required_keys() if k not in manifest]
        if missing or unset:
            raise ArtifactError(f"{folder}: incomplete artifact: files {missing} and settings {unset} are missing "
                                f"from the manifest")
        return cls(folder, manifest, open_network(folder, manifest, backend, providers))

    def _check_arrays(self) -> None:
        """The arrays against each other and the manifest: shapes, descriptor_dims, n_train, dtype, finite values."""
        m, settings, n = self.manifest, self.settings, len(self.train_hists)
        sides = [settings.image_size // stride for stride in settings.strides]
        for name, bank, side in zip(BANKS, self.banks, sides):
            if bank.ndim != 4 or (bank.shape[0], *bank.shape[2:]) != (n, side, side):
                raise ArtifactError(f"{self.folder}: {array_file(name)} has shape {bank.shape}; expected (N={n}, D, "
                                    f"{side}, {side}) for image_size {settings.image_size}")
        fine = sides[0]
        for name, array, shape in ((BANK_FOREGROUND, self.bank_fg, (n, fine, fine)),
                                   (LOCATION_OFFSET, self.location_offset, (fine, fine))):
            if array.shape != shape:
                raise ArtifactError(f"{self.folder}: {array_file(name)} has shape {array.shape}; expected {shape}")
        dims = [bank.shape[1] for bank in self.banks]
        for name, memory, bank in zip(MEMORIES, self.memories, self.banks):
            n_memory = len(memory) if memory.ndim == 4 else 0
            if memory.shape != (n_memory, *bank.shape[1:]) or n_memory < 1 or memory.dtype != bank.dtype:
                raise ArtifactError(f"{self.folder}: {array_file(name)} is {memory.dtype} {memory.shape}; expected "
                                    f"{bank.dtype} (M >= 1, {', '.join(map(str, bank.shape[1:]))}) like its bank")
        if "descriptor_dims" in m and m["descriptor_dims"] != dims:
            raise ArtifactError(f"{self.folder}: manifest setting 'descriptor_dims' = {m['descriptor_dims']!r} does "
                                f"not match the banks (D = {dims} in {' and '.join(map(array_file, BANKS))})")
        if "n_train" in m and m["n_train"] != n:
            raise ArtifactError(f"{self.folder}: manifest setting 'n_train' = {m['n_train']!r} does not match the "
                                f"arrays ({n} training images in {array_file(TRAIN_HISTS)})")
        if settings.top_k > n:
            raise ArtifactError(f"{self.folder}: manifest setting 'top_k' = {m['top_k']!r} is not allowed: must be "
                                f"an integer in [1, {n}] (the number of training images)")
        n_codes = self.centers.shape[0] if self.centers.ndim == 2 else -1
        if "n_clusters" in m and n_codes != m["n_clusters"]:
            raise ArtifactError(f"{self.folder}: {array_file(CENTERS)} has shape {self.centers.shape}; expected "
                                f"(n_clusters = {m['n_clusters']}, C)")
        hist_shape = (n, settings.grid ** 2, n_codes + 1)
        if self.train_hists.shape != hist_shape:
            raise ArtifactError(f"{self.folder}: {array_file(TRAIN_HISTS)} has shape {self.train_hists.shape}; "
                                f"expected {hist_shape} (N, grid^2, n_clusters + 1)")
        if "bank_dtype" in m and any(str(b.dtype) != m["bank_dtype"] for b in self.banks):
            raise ArtifactError(f"{self.folder}: manifest setting 'bank_dtype' = {m['bank_dtype']!r} does not match "
                                f"the banks ({self.banks[0].dtype}, {self.banks[1].dtype})")
        for name, array in (*zip(BANKS, self.banks), (TRAIN_HISTS, self.train_hists), (BANK_FOREGROUND, self.bank_fg),
                            (CENTERS, self.centers), *zip(MEMORIES, self.memories),
                            (LOCATION_OFFSET, self.location_offset)):
            for i in range(len(array)):  # one training image at a time: no full-bank temporary
                if not np.isfinite(array[i]).all():
                    raise ArtifactError(f"{self.folder}: {array_file(name)} holds NaN or inf (training image {i}); "
                                        f"re-export the model")

    @property
    def min_image_side(self) -> int:
        """The smallest image side scored: the side of the finest patch grid (image_size / finest stride);
        an image with a shorter side has fewer pixels than patches and gets no verdict."""
        return self.image_size // self.settings.strides[0]

    @property
    def threshold(self) -> float:
        """Decision threshold recorded at export (from the good training images' leave-one-out scores:
        ``cpr_engine.inputs.good_score_threshold``)."""
        return self.settings.threshold

    @property
    def pixel_normal(self) -> tuple[float, float]:
        """(median, max) pixel score of the good training images (scales heat-map overlays)."""
        return self.settings.pixel_normal

    @property
    def tail_state(self) -> tail.TailState:
        """The training state the scoring tail searches (this artifact's arrays)."""
        return tail.TailState(self.centers, self.train_hists, self.banks, self.bank_fg, self.memories,
                              self.memory_indices, self.location_offset)

    def score_outputs(self, out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The scoring tail on the network's outputs (``out``: graph output name -> array) -> maps (B, S, S)
        float32, scores (B,) float32."""
        foreground = out[FOREGROUND_OUTPUT] if self.settings.use_foreground else None
        return tail.score([out[name] for name in DESCRIPTOR_OUTPUTS], out[FEATURES_OUTPUT], foreground,
                          self.tail_state, self.settings)

    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and model-resolution maps for a list of (H, W, 3) uint8 RGB images.

        Returns:
            scores (B,) float32, maps (B, S, S) float32.
        """
        maps, scores = self.score_outputs(self.network(to_model_input(images, self.image_size, self.min_image_side)))
        return scores, maps

    def predict(self, images, batch_size: int = 8, color: str = "RGB"):
        """Score one image (-> ``Prediction``) or many (-> list of ``Prediction``).

        Args:
            images: (H, W, 3) uint8 array, (B, H, W, 3) array, a path, a folder, or a list of them.
                Grayscale, RGBA and 16-bit images are converted.
            batch_size: images per network call.
            color: channel order of array inputs, "RGB" (default) or "BGR" (OpenCV's
                ``cv2.imread`` order); files are always decoded correctly.
        Returns:
            ``Prediction(score, anomaly_map (H, W) float32 at the input size, is_anomalous)``.
        """
        return predict_batched(self.score_batch, images, self.threshold, batch_size, color)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"ArtifactDetector({str(self.folder)!r}, variant={m.get('variant')!r}, category={m.get('category')!r}, "
                f"backend={self.network.name!r}, bank={m.get('bank_dtype')})")
