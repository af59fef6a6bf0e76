"""``Detector``: the Python API of cpr-engine (fit, predict, save, load).

Example:
    >>> det = Detector("faster").fit("path/to/category/train/good", steps=200)
    >>> pred = det.predict("part_0001.png")
    >>> pred.score, pred.anomaly_map.shape, pred.is_anomalous
    >>> sup = Detector("faster").fit("path/to/category/train/good", defects="path/to/defects")  # supervised
    >>> sup.meta["supervised"]["defects"][0]  # {"image": ..., "mask": ...}, saved in model.pt
    >>> Detector.load("bottle_artifact")  # an exported artifact folder: torch-free ArtifactDetector
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .allocator import keep_freed_buffers
from .config import CPRConfig
from .data import defect_folder_pairs, read_defects
from .errors import InputError, ModelFileError, torch_load_failure
from .inputs import as_image_list, good_score_threshold, predict_batched, score_bound
from .outputs import check_tool_folder
from .preprocess import check_image_sides, resize_image, to_model_input
from .training.real_defects import P_PASTE, P_REAL_DEFECT, defects_at_size

# torch is imported where it is used, so that importing this module (and loading an exported
# artifact with Detector.load) works in a runtime install without torch.

log = logging.getLogger(__name__)

MODEL_FORMAT = "cpr-engine-model"
#: file that marks a ``fit(run_dir=...)`` folder as the engine's, so that a later fit may write into it
RUN_DIR_MARKER = ".cpr-fit"
MODEL_FORMAT_VERSION = 4  # 2: the memory and a location weight; 3: the location offset; 4: a memory size per scale
#: How ``payload["integrity"]`` digests the state dict (see :func:`tensors_sha256`).
DIGEST_SCHEME = "sha256: sorted state-dict keys; each key, dtype, shape and raw bytes"
#: How ``payload["integrity"]`` digests the settings (see :func:`settings_sha256`).
SETTINGS_DIGEST_SCHEME = "sha256: the config JSON string, a NUL byte, the meta JSON string (UTF-8)"


def tensors_sha256(state_dict: dict) -> str:
    """Hex SHA-256 of a state dict: for each key in sorted order its name, dtype, shape and raw bytes."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def settings_sha256(config_json: str, meta_json: str) -> str:
    """Hex SHA-256 of a model file's settings: its config and meta JSON strings, NUL-separated."""
    return hashlib.sha256(f"{config_json}\0{meta_json}".encode()).hexdigest()


class Detector:
    """Train and run a CPR anomaly detector.

    Args:
        variant: "cpr" | "fast" | "faster" (see ``CPRConfig.preset``).
        backbone: backbone name (default EfficientNet-Lite0, offline weights; "densenet201" is the
            paper's); ``weights``: path of its ImageNet checkpoint.
        device: "cpu" / "cuda" (default: CUDA when available).
        pretrained: False gives random backbone weights (tests only).
        **overrides: any ``CPRConfig`` field, e.g. ``steps=200``, ``top_k=5``.
    Images are RGB (H, W, 3) uint8 arrays, paths, folders or lists of them.
    """

    def __init__(self, variant: str = "cpr", *, backbone: str | None = None, weights: str | None = None,
                 device: str | None = None, pretrained: bool = True, **overrides):
        if backbone:
            overrides["backbone"] = backbone
        self.config = CPRConfig.preset(variant, **overrides)
        self.weights = weights
        self.pretrained = pretrained
        from .training.trainer import resolve_device

        self.device = resolve_device(device)
        self.model = None  # CPRModel once trained or loaded
        self.meta: dict = {}
        keep_freed_buffers()  # per-image buffers stay in the heap (cpr_engine.allocator)

    @property
    def threshold(self) -> float:
        """Decision threshold (``inputs.good_score_threshold``) from the leave-one-out scores of the good
        training images, or from the good held-out images given to :meth:`calibrate`
        (``meta["threshold_source"]`` says which, and how)."""
        self._require_model()
        return float(self.meta["threshold"])

    def calibrate(self, images, batch_size: int = 8) -> float:
        """Set the decision threshold from good images kept out of training (e.g. MVTec AD 2's
        ``validation/good``) by the rule the leave-one-out threshold follows on training images
        (``inputs.good_score_threshold``). Images as :meth:`predict` takes them. Returns the threshold.

        Raises:
            InputError when no image is given; the errors of :meth:`predict` for unreadable images
            and NonFiniteScoreError for a NaN/inf score (the threshold is then unchanged).
        """
        predictions = self.predict(images, batch_size)
        scores = [p.score for p in (predictions if isinstance(predictions, list) else [predictions])]
        if not scores:
            raise InputError("calibrate: no images given")
        pixel_max = self.meta.get("pixel_normal", (0.0, math.inf))[1]
        bound = score_bound(self.config.top_t, self.config.image_size, pixel_max)
        self.meta["threshold"], self.meta["threshold_source"] = good_score_threshold(
            scores, "scores of good held-out images", bound)
        return self.meta["threshold"]

    @property
    def image_size(self) -> int:
        """S: side of the square model input."""
        return self.config.image_size

    @property
    def pixel_normal(self) -> tuple[float, float]:
        """(median, max) pixel score of the good training images (scales heat-map overlays)."""
        self._require_model()
        return tuple(self.meta.get("pixel_normal", (0.0, 1.0)))

    def _require_model(self) -> None:
        if self.model is None:
            raise RuntimeError("Detector is not trained: call fit(...) or Detector.load(path) first")

    def fit(self, train, *, texture: bool = False, texture_dir: str | None = None, run_dir: str | None = None,
            progress: bool = False, category: str = "", steps: int | None = None, time_budget: float | None = None,
            defects: str | Path | Sequence[tuple[str, str]] | None = None, p_real_defect: float = P_REAL_DEFECT,
            p_paste: float = P_PASTE) -> "Detector":
        """Train on good images, optionally with a few real defective images and their masks.

        Args:
            train: a folder of good images, an MVTec-style category folder (uses ``train/good``),
                or a list of (H, W, 3) uint8 RGB arrays / paths.
            texture: True forces the texture setting (no foreground branch; 500 steps on a GPU). Default
                False: the foreground branch is fitted and kept only when it helps on a validation split
                of the training images.
            texture_dir: optional anomaly-texture folder (e.g. DTD) for synthetic anomalies.
            run_dir: folder for ``train.log``, ``checkpoints/`` and ``config.json``: new, empty, or one an
                earlier ``fit`` wrote (it holds ``RUN_DIR_MARKER``); anything else is refused (OutputError)
                before any work.
            steps: training steps (overrides the config; default: as many as the time budget allows on a
                CPU, the paper's schedule on a GPU).
            time_budget: seconds of local-metric training (overrides the config; default 90 on a CPU).
            defects: supervised mode (method page, section 7b). A folder of defect images, each
                paired by file stem with its mask: ``DIR/<stem>.png`` and ``DIR/masks/<stem>.png``,
                ``DIR/masks/<stem>_mask.png`` or ``DIR/<stem>_mask.png`` (first found; any image
                extension; a mask marks the defect with pixels > 0 and has its image's size); or a
                list of ``(image_path, mask_path)`` pairs. Default None: good images only.
            p_real_defect: probability that a training query is a real defective image (with ``defects``).
            p_paste: probability that 1-5 real defects are pasted onto a query (with ``defects``).
        Returns:
            self. ``meta["supervised"]`` is None, or records the defect files (``"defects"``: image
            and mask paths) and the probabilities; it is saved in the model file.
        """
        if run_dir:  # before any work: a folder of the user's is never written into
            check_tool_folder(Path(run_dir), RUN_DIR_MARKER, "run_dir", "Detector.fit")
        if isinstance(train, (str, Path)) and (Path(train) / "train" / "good").is_dir():
            train = Path(train) / "train" / "good"
        images, _ = as_image_list(train)
        if self.config.top_k > len(images):  # retrieval never returns more images than there are
            log.info("top_k %d > %d training images: retrieving all of them", self.config.top_k, len(images))
            self.config = self.config.replace(top_k=len(images))
        pairs, defect_arrays = None, None
        if defects is not None:
            pairs = defect_folder_pairs(defects) if isinstance(defects, (str, Path)) else [tuple(p) for p in defects]
            defect_arrays = defects_at_size(*read_defects(pairs), self.config.image_size)
        if steps is not None or time_budget is not None:
            self.config = self.config.replace(steps=self.config.steps if steps is None else steps,
                                              time_budget=self.config.time_budget if time_budget is None else time_budget)
        from .backbones import build_backbone
        from .training.trainer import train_model

        backbone = build_backbone(self.config.backbone, self.weights, pretrained=self.pretrained)
        check_image_sides([im.shape for im in images], self.config.image_size // backbone.strides[0],
                          self.config.image_size)
        batch = np.stack([resize_image(im, self.config.image_size) for im in images])
        if run_dir:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / RUN_DIR_MARKER).write_text("written by cpr_engine Detector.fit\n")
        self.model, report = train_model(batch, self.config, backbone, is_texture=texture, texture_dir=texture_dir,
                                         device=str(self.device), run_dir=run_dir, progress=progress,
                                         defects=defect_arrays, p_real_defect=p_real_defect, p_paste=p_paste)
        self.config = self.model.config  # with what training chose: descriptor heads, windows
        self.meta = {"category": category, "engine_version": __version__, **report.to_dict()}
        if pairs is not None:
            self.meta["supervised"]["defects"] = [{"image": str(i), "mask": str(m)} for i, m in pairs]
        if run_dir:
            (Path(run_dir) / "config.json").write_text(self.config.to_json())
        return self

    @property
    def min_image_side(self) -> int:
        """The smallest image side scored: the side of the finest patch grid (image_size / finest stride);
        an image with a shorter side has fewer pixels than patches and gets no verdict."""
        self._require_model()
        return self.config.image_size // self.model.backbone.strides[0]

    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and model-resolution maps for a list of RGB uint8 images.

        Returns:
            scores (B,) float32, maps (B, S, S) float32.
        """
        import torch

        self._require_model()
        x = torch.from_numpy(to_model_input(images, self.config.image_size, self.min_image_side)).to(self.device)
        with torch.no_grad():
            out = self.model(x)
        return out.pred_score.float().cpu().numpy(), out.anomaly_map.float().cpu().numpy()

    def predict(self, images, batch_size: int = 8, color: str = "RGB"):
        """Score one image (-> ``Prediction``) or many (-> list of ``Prediction``).

        Args:
            images: (H, W, 3) uint8 array, (B, H, W, 3) array, a path, a folder, or a list.
            batch_size: images per forward pass.
            color: channel order of array inputs, "RGB" (default) or "BGR" (``cv2.imread``'s).
        """
        return predict_batched(self.score_batch, images, self.threshold, batch_size, color)

    def save(self, path: str | Path) -> Path:
        """Write ``model.pt``: tensors + JSON strings only (loads with ``weights_only=True``).

        The JSON string ``integrity`` holds :func:`tensors_sha256` of the state dict and
        :func:`settings_sha256` of the config and meta strings; :meth:`load` recomputes both and
        refuses a file whose tensors or settings changed.
        """
        import torch

        self._require_model()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state_dict = {k: v.cpu() for k, v in self.model.state_dict().items()}
        config_json, meta_json = self.config.to_json(), json.dumps(self.meta)
        payload = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "config": config_json,
            "meta": meta_json,
            "integrity": json.dumps({"tensors_sha256": tensors_sha256(state_dict), "scheme": DIGEST_SCHEME,
                                     "settings_sha256": settings_sha256(config_json, meta_json),
                                     "settings_scheme": SETTINGS_DIGEST_SCHEME}),
            "state_dict": state_dict,
        }
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # a new name
        os.close(handle)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)  # never leave a half-written model behind
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, **runtime_options):
        """Load a ``model.pt`` written by :meth:`save` (no code is unpickled), or an artifact folder.

        Args:
            path: a model file -> ``Detector`` (PyTorch; ``device`` applies), or an artifact folder
                written by ``cpr-export`` -> :class:`cpr_engine.runtime.detector.ArtifactDetector`
                (no torch needed; ``runtime_options``: ``backend``, ``providers``, ``verify``).
        Raises:
            FileNotFoundError when ``path`` does not exist; ModelFileError naming the file and the
            problem: not a readable torch file (random bytes, another zip, a pickle with code), not a
            cpr-engine model, another format version, an unusable config or meta, a non-finite
            threshold, a missing or unexpected state-dict key, NaN/inf in a tensor, a tensor digest
            mismatch (tampered or corrupted); ArtifactError for an artifact folder.
        """
        path = Path(path)
        if path.is_dir():
            from .runtime.detector import ArtifactDetector

            return ArtifactDetector.load(path, **runtime_options)
        if runtime_options:
            raise TypeError(f"Detector.load: {sorted(runtime_options)} apply to artifact folders only; {path} is not one")
        from .backbones import build_backbone
        from .backbones._common import load_tensors
        from .torch_model import CPRModel

        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        try:
            payload = load_tensors(path)
        except Exception as exc:  # corrupt, truncated, not a torch file, or a pickle with code
            raise ModelFileError(f"{path} is not a readable cpr-engine model file: "
                                 f"{torch_load_failure(path, exc)}") from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"{path} is not a cpr-engine model file (missing format tag '{MODEL_FORMAT}')")
        version = payload.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ModelFileError(f"{path} has model format version {version}; this engine ({__version__}) "
                                 f"reads version {MODEL_FORMAT_VERSION} (train the model again)")
        config, meta, state = _checked_payload(path, payload)
        det = cls(config.variant, device=device, pretrained=False)
        det.config, det.meta = config, meta
        backbone = build_backbone(config.backbone, pretrained=False)
        widths = tuple(int(state[k].shape[1]) for k in ("bank_4", "bank_8")) if all(
            k in state and state[k].dim() == 4 for k in ("bank_4", "bank_8")) else None
        model = CPRModel(config, backbone, int(meta["n_train"]), widths)
        expected = model.state_dict()
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            what = f"missing key {missing[0]!r}" if missing else f"unexpected key {extra[0]!r}"
            more = len(missing) + len(extra) - 1
            raise ModelFileError(f"{path}: state dict {what}{f' (and {more} more)' if more else ''}; the file does "
                                 f"not fit its own config (damaged or edited model file)")
        for key, tensor in expected.items():
            if tuple(state[key].shape) != tuple(tensor.shape) or state[key].dtype != tensor.dtype:
                raise ModelFileError(f"{path}: state dict key {key!r} is {state[key].dtype} "
                                     f"{tuple(state[key].shape)}; the config needs {tensor.dtype} {tuple(tensor.shape)}")
        model.load_state_dict(state, strict=True)
        det.model = model.to(det.device).eval()
        return det


def _checked_payload(path: Path, payload: dict):
    """(config, meta, state dict) of a model.pt payload, checked: ModelFileError naming ``path`` and the problem.

    Checks: the JSON strings parse and the config is valid; ``n_train`` and a finite ``threshold``
    are present; every state-dict value is a tensor and every floating tensor is finite; the
    integrity record is present and its tensor digest matches (and its settings digest, which files
    saved before it was added lack); the settings the runtimes check in an artifact are in range
    (threshold, pixel_normal, grid, kept_blocks, top_t, ...) and ``n_train`` matches the arrays.
    A ``top_k`` above ``n_train`` is read as ``n_train`` (retrieval never returns more images).
    """
    import torch

    from .backbones import BACKBONES
    from .runtime.artifact import ArtifactError, check_settings

    try:
        config = CPRConfig.from_json(payload["config"])
    except Exception as exc:  # missing, not JSON, unknown or out-of-range fields
        raise ModelFileError(f"{path}: unusable config ({' '.join(str(exc).split())[:300]})") from exc
    try:
        meta = json.loads(payload["meta"])
        if not isinstance(meta, dict):
            raise TypeError(f"a JSON object expected, got {type(meta).__name__}")
    except Exception as exc:
        raise ModelFileError(f"{path}: unreadable meta ({exc})") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFileError(f"{path}: 'state_dict' is not a dict of named tensors")
    _check_integrity(path, payload, state)
    n_train = meta.get("n_train")
    if not isinstance(n_train, int) or isinstance(n_train, bool) or n_train < 1:
        raise ModelFileError(f"{path}: meta 'n_train' = {n_train!r}; must be an integer >= 1")
    hists = state.get("train_hists")
    if hists is not None and (hists.dim() == 0 or hists.shape[0] != n_train):
        raise ModelFileError(f"{path}: meta 'n_train' = {n_train} does not match the {tuple(hists.shape)} training "
                             f"histograms (damaged or edited model file)")
    threshold = meta.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ModelFileError(f"{path}: meta 'threshold' = {threshold!r}; must be a finite number")
    settings = {"variant": config.variant, "image_size": config.image_size, "grid": config.grid,
                "kept_blocks": config.kept_blocks, "blur_sigma": config.blur_sigma, "top_t": config.top_t,
                "n_train": n_train, "n_clusters": config.n_clusters, "threshold": threshold,
                "foreground_on_map": config.foreground_on_map}
    if "pixel_normal" in meta:
        settings["pixel_normal"] = meta["pixel_normal"]
    if config.backbone in BACKBONES:  # the windows against the map sides
        settings.update(strides=list(BACKBONES[config.backbone].strides), windows=list(config.windows))
    try:
        check_settings(path, settings, what="setting")
    except ArtifactError as exc:
        raise ModelFileError(str(exc)) from exc
    if config.top_k > n_train:
        config = config.replace(top_k=n_train)
    for key in sorted(state):
        tensor = state[key]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            n_nan = int(torch.isnan(tensor).sum())
            raise ModelFileError(f"{path}: state dict key {key!r} holds non-finite values ({n_nan} NaN, "
                                 f"{int((~torch.isfinite(tensor)).sum()) - n_nan} inf)")
    return config, meta, state


def _check_integrity(path: Path, payload: dict, state: dict) -> None:
    """The integrity record of a model.pt payload against its tensors and settings (ModelFileError when it
    is missing, unreadable or does not match)."""
    integrity = payload.get("integrity")
    if integrity is None:
        raise ModelFileError(f"{path}: no integrity record (every model file of format {MODEL_FORMAT_VERSION} has "
                             "one: edited or not written by cpr-engine)")
    try:
        record = json.loads(integrity)
        recorded = record["tensors_sha256"]
    except Exception as exc:
        raise ModelFileError(f"{path}: unreadable integrity record ({exc})") from exc
    if tensors_sha256(state) != recorded:
        raise ModelFileError(f"{path}: tensor digest mismatch (tampered or corrupted model file)")
    if "settings_sha256" in record and settings_sha256(payload["config"], payload["meta"]) != record["settings_sha256"]:
        raise ModelFileError(f"{path}: settings digest mismatch (config or meta edited: tampered or corrupted "
                             "model file)")
