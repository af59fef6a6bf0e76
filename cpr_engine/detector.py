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

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .config import CPRConfig
from .data import defect_folder_pairs, read_defects
from .inputs import as_image_list, predict_batched
from .preprocess import resize_image, to_model_input
from .training.real_defects import P_PASTE, P_REAL_DEFECT, defects_at_size

# torch is imported where it is used, so that importing this module (and loading an exported
# artifact with Detector.load) works in a runtime install without torch.

log = logging.getLogger(__name__)

MODEL_FORMAT = "cpr-engine-model"
MODEL_FORMAT_VERSION = 1


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

    @property
    def threshold(self) -> float:
        """Decision threshold: the largest leave-one-out score of the good training images."""
        self._require_model()
        return float(self.meta["threshold"])

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
            run_dir: folder for ``train.log`` and ``checkpoints/``.
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
        if isinstance(train, (str, Path)) and (Path(train) / "train" / "good").is_dir():
            train = Path(train) / "train" / "good"
        images, _ = as_image_list(train)
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
        batch = np.stack([resize_image(im, self.config.image_size) for im in images])
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

    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and model-resolution maps for a list of RGB uint8 images.

        Returns:
            scores (B,) float32, maps (B, S, S) float32.
        """
        import torch

        self._require_model()
        x = torch.from_numpy(to_model_input(images, self.config.image_size)).to(self.device)
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
        """Write ``model.pt``: tensors + JSON strings only (loads with ``weights_only=True``)."""
        import torch

        self._require_model()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "config": self.config.to_json(),
            "meta": json.dumps(self.meta),
            "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written model behind
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, **runtime_options):
        """Load a ``model.pt`` written by :meth:`save` (no code is unpickled), or an artifact folder.

        Args:
            path: a model file -> ``Detector`` (PyTorch; ``device`` applies), or an artifact folder
                written by ``cpr-export`` -> :class:`cpr_engine.runtime.detector.ArtifactDetector`
                (no torch needed; ``runtime_options``: ``backend``, ``providers``, ``verify``).
        """
        path = Path(path)
        if path.is_dir():
            from .runtime.detector import ArtifactDetector

            return ArtifactDetector.load(path, **runtime_options)
        if runtime_options:
            raise TypeError(f"Detector.load: {sorted(runtime_options)} apply to artifact folders only; {path} is not one")
        import torch

        from .backbones import build_backbone
        from .torch_model import CPRModel

        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, truncated or not a torch file
            raise ValueError(f"{path} is not a readable cpr-engine model file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path} is not a cpr-engine model file (missing format tag '{MODEL_FORMAT}')")
        version = payload.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ValueError(f"{path} has model format version {version}; this engine ({__version__}) "
                             f"reads version {MODEL_FORMAT_VERSION}")
        config = CPRConfig.from_json(payload["config"])
        meta = json.loads(payload["meta"])
        det = cls(config.variant, device=device, pretrained=False)
        det.config, det.meta = config, meta
        backbone = build_backbone(config.backbone, pretrained=False)
        model = CPRModel(config, backbone, int(meta["n_train"]))
        model.load_state_dict(payload["state_dict"], strict=True)
        det.model = model.to(det.device).eval()
        return det
