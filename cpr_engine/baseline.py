"""The engine's accuracy floor: a plain full-bank nearest neighbour over the backbone taps.

Every training patch of every training image is a candidate (no retrieval, no window, no learned
metric, no foreground): the patch score is ``1 - max cosine`` between a test patch's tap vector
and every training patch of the same tap, searched at the tap's own stride. Per-tap maps go through
the same post-processing as CPR (fusion, upsampling, blur, top-T image score), so a CPR model and
its baseline are scored by one code path (``cpr-eval --baseline knn``).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import CPRConfig
from .preprocess import to_model_input
from .reference import postprocess

BANK_CHUNK = 32_768  # training patches per matrix product (bounds memory to ~B*h*w*BANK_CHUNK floats)


def full_bank_search(query: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour cosine distance of every query location to a bank of patch vectors.

    Args:
        query: (B, C, h, w) float32 L2-normalised per location.
        bank: (M, C) float32 L2-normalised rows.
    Returns:
        (B, h, w) float32: ``1 - max_m <query, bank_m>``.
    """
    b, c, h, w = query.shape
    q = query.permute(0, 2, 3, 1).reshape(-1, c)
    best = torch.full((q.shape[0],), -float("inf"), dtype=q.dtype, device=q.device)
    for start in range(0, bank.shape[0], BANK_CHUNK):
        best = torch.maximum(best, (q @ bank[start:start + BANK_CHUNK].T).amax(1))
    return (1.0 - best).reshape(b, h, w)


class KNNBaseline:
    """Full-bank 1-NN detector over the taps of ``config.backbone`` (same input size, same post-processing).

    Args:
        config: a ``CPRConfig`` (backbone, image_size, blur_sigma, top_t are read).
        backbone: the frozen ``FeatureExtractor`` of that config.
        device: torch device.
    """

    def __init__(self, config: CPRConfig, backbone: torch.nn.Module, device: str | torch.device = "cpu"):
        self.config, self.device = config, torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.mean = torch.tensor(backbone.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(backbone.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.banks: list[torch.Tensor] = []

    @property
    def image_size(self) -> int:
        """S: side of the square model input (as ``Detector.image_size``)."""
        return self.config.image_size

    @torch.no_grad()
    def _taps(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        x = torch.from_numpy(to_model_input(images, self.config.image_size)).to(self.device)
        return [F.normalize(t, dim=1) for t in self.backbone((x - self.mean) / self.std)]

    def fit(self, images: list[np.ndarray], batch_size: int = 16) -> "KNNBaseline":
        """Store every patch vector of the good (H, W, 3) uint8 RGB ``images``; returns self."""
        per_tap: list[list[torch.Tensor]] = [[], []]
        for i in range(0, len(images), batch_size):
            for store, tap in zip(per_tap, self._taps(images[i:i + batch_size])):
                store.append(tap.permute(0, 2, 3, 1).reshape(-1, tap.shape[1]))
        self.banks = [torch.cat(store) for store in per_tap]
        return self

    @torch.no_grad()
    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores (B,) float32 and maps (B, S, S) float32 for RGB uint8 images, as ``Detector.score_batch``."""
        if not self.banks:
            raise RuntimeError("KNNBaseline is not fitted: call fit(images) first")
        local = [full_bank_search(tap, bank) for tap, bank in zip(self._taps(images), self.banks)]
        anomaly_map, score = postprocess(local, None, self.config.image_size, self.config.blur_sigma,
                                         self.config.top_t)
        return score.cpu().numpy(), anomaly_map.cpu().numpy()
