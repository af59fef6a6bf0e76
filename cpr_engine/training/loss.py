"""Contrastive hinge-cube loss on sampled descriptor pairs (method page, section 6)."""
from __future__ import annotations

import torch


def contrastive_loss(pos_cos: torch.Tensor, neg_cos: torch.Tensor, neg_valid: torch.Tensor,
                     pos_margin: float = 0.8, neg_margin: float = -0.2) -> torch.Tensor:
    """Push positives above ``pos_margin`` and negatives below ``neg_margin`` (cosine), hinge^3.

    Args:
        pos_cos: (P,) float32 cosine of positive pairs.
        neg_cos: (Q,) float32 cosine of negative pairs.
        neg_valid: (Q,) bool, which negatives count.
    Returns:
        () float32: mean positive term + mean negative term (0 for an empty set).
    """
    pos = torch.relu(pos_margin - pos_cos).pow(3).mean() if pos_cos.numel() else pos_cos.sum()
    neg_terms = torch.relu(neg_cos - neg_margin).pow(3) * neg_valid
    neg = neg_terms.sum() / neg_valid.sum().clamp(min=1)
    return pos + neg
