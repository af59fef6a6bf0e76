"""What one training sample is made of: a query image, its anomaly mask, its foreground and a reference.

Unsupervised (method page, section 6): a good training image with a synthetic anomaly, paired
with one of its retrieved training images. Supervised (section 7b) adds real defects: with
probability ``p_real_defect`` the query is a real defective image (its mask is the anomaly mask,
its own retrieved training images the references) instead of a synthetic one, and with
probability ``p_paste`` real defects are pasted onto the query (:mod:`.real_defects`).

NumPy only; randomness from the ``numpy.random.Generator`` passed to :meth:`QuerySampler.draw`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .real_defects import P_PASTE, P_REAL_DEFECT, apply_pastes, check_probability, draw_pastes
from .synthesis import AnomalySource, synthesize_anomaly


class Query(NamedTuple):
    """One training sample."""

    image: np.ndarray  # (S, S, 3) uint8 query
    anomaly: np.ndarray  # (S, S) bool anomaly mask (positives are sampled outside it)
    foreground: np.ndarray  # (S, S) float32 foreground weight of the query
    reference: int  # index of the paired training image


@dataclass
class RealDefects:
    """Real defective images at model size, ready to be queries.

    Attributes:
        images: (M, S, S, 3) uint8; masks: (M, S, S) bool, each non-empty.
        foreground: (M, S, S) float32 foreground of each (ones for textures).
        references: (M, K) int64 training images retrieved for each, closest first.
    """

    images: np.ndarray
    masks: np.ndarray
    foreground: np.ndarray
    references: np.ndarray


class QuerySampler:
    """Draws training samples and counts how many used real defects.

    Args:
        images_u8: (N, S, S, 3) uint8 good training images.
        foreground: (N, S, S) float32 foreground of each (ones for textures).
        use_fg_mask: confine synthetic anomalies to the foreground (objects).
        source: appearance source of the synthetic anomalies.
        references: (N, K') int64 retrieved training images of each training image (itself excluded).
        real: real defects (supervised) or ``None``.
        p_real_defect, p_paste: probabilities of section 7b (used only with ``real``).
    """

    def __init__(self, images_u8: np.ndarray, foreground: np.ndarray, use_fg_mask: bool, source: AnomalySource,
                 references: np.ndarray, real: RealDefects | None = None, p_real_defect: float = P_REAL_DEFECT,
                 p_paste: float = P_PASTE):
        self.images_u8, self.foreground, self.use_fg_mask = images_u8, foreground, use_fg_mask
        self.source, self.references, self.real = source, references, real
        self.p_real_defect = check_probability("p_real_defect", p_real_defect)
        self.p_paste = check_probability("p_paste", p_paste)
        if real is not None and real.references.shape[1] < references.shape[1]:
            raise ValueError(f"QuerySampler: real defects have {real.references.shape[1]} references each, "
                             f"fewer than the {references.shape[1]} of the training images")
        self.real_queries = 0
        self.pasted_queries = 0

    @property
    def n_references(self) -> int:
        """K': references per query; :meth:`draw` takes a column below it."""
        return self.references.shape[1]

    def draw_synthetic(self, i: int, rng: np.random.Generator, confined: bool) -> tuple[np.ndarray, np.ndarray]:
        """Good image ``i`` with a synthetic anomaly (inside its foreground when ``confined``):
        (S, S, 3) uint8 image, (S, S) bool mask."""
        fg = self.foreground[i] > 0.5 if confined else None
        return synthesize_anomaly(self.images_u8[i], rng, self.source, fg)

    def draw(self, i: int, column: int, rng: np.random.Generator) -> Query:
        """Training sample built on good image ``i`` and its ``column``-th reference.

        Without real defects this draws exactly what the unsupervised trainer always drew.
        """
        real = self.real
        if real is not None and rng.random() < self.p_real_defect:
            j = int(rng.integers(len(real.images)))
            query = Query(real.images[j], real.masks[j], real.foreground[j], int(real.references[j, column]))
            self.real_queries += 1
        else:
            image, anomaly = self.draw_synthetic(i, rng, self.use_fg_mask)
            query = Query(image, anomaly, self.foreground[i], int(self.references[i, column]))
        if real is not None and rng.random() < self.p_paste:
            image, anomaly = apply_pastes(query.image, query.anomaly, draw_pastes(real.images, real.masks, rng))
            query = query._replace(image=image, anomaly=anomaly)
            self.pasted_queries += 1
        return query
