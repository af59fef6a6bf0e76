"""Heat-map overlays for people to look at (NumPy + OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np


def heatmap_overlay(image: np.ndarray, anomaly_map: np.ndarray, normal_level: tuple[float, float],
                    alpha: float = 0.5) -> np.ndarray:
    """Blend a JET heat map over an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        anomaly_map: (H, W) float32 pixel scores.
        normal_level: (median, max) pixel score on good images: the median is drawn blue, the
            max mid-scale (green), twice as far above the median and more saturate to red.
        alpha: weight of the heat map.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    if anomaly_map.shape != image.shape[:2]:
        raise ValueError(f"heatmap_overlay: map {anomaly_map.shape} does not match image {image.shape[:2]}")
    low, high = normal_level
    level = np.clip((anomaly_map - low) / (2.0 * max(high - low, 1e-12)), 0.0, 1.0)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)
