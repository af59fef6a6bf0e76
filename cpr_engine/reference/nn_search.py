"""Local retrieval ("shooting"): location-restricted nearest-neighbour search.

Plain PyTorch reference (method page, section 3). The native kernels of ``cpr_engine.ops``
must match this function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nn_search(query: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, window: int) -> torch.Tensor:
    """Minimum cosine distance of each query descriptor to the retrieved references near it.

    For query location (i, j) the candidates are ``bank[index[b, k], :, i + dy, j + dx]`` for
    every retrieved k and every |dy|, |dx| <= window // 2 inside the map; positions outside the
    map never win. Descriptors are expected L2-normalized, so cosine = dot product.

    Args:
        query: (B, D, H, W) float32 descriptors.
        bank: (N, D, H, W) float32 or float16 descriptors of the training images.
        index: (B, K) int64 rows of ``bank`` retrieved for each query, 0 <= index < N.
        window: odd window side r.
    Returns:
        (B, H, W) float32 patch scores ``1 - max cosine`` (in [0, 2]).
    """
    b, d, h, w = query.shape
    if bank.dim() != 4 or bank.shape[1:] != query.shape[1:]:
        raise ValueError(
            f"nn_search: bank must be (N, {d}, {h}, {w}) to match query {tuple(query.shape)}, "
            f"got {tuple(bank.shape)}")
    if index.dim() != 2 or index.shape[0] != b:
        raise ValueError(f"nn_search: index must be ({b}, K), got {tuple(index.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"nn_search: window must be odd and >= 1, got {window}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= bank.shape[0]):
        raise IndexError(
            f"nn_search: index values must be in [0, {bank.shape[0]}), got "
            f"[{int(index.min())}, {int(index.max())}]")
    p = window // 2
    valid = F.pad(torch.ones(1, h, w, device=query.device), (p, p, p, p))
    out = torch.empty(b, h, w, dtype=torch.float32, device=query.device)
    for i in range(b):
        refs = F.pad(bank[index[i]].float(), (p, p, p, p))  # (K, D, H + 2p, W + 2p)
        best = torch.full((h, w), -float("inf"), device=query.device)
        for dy in range(window):
            for dx in range(window):
                sim = (refs[:, :, dy:dy + h, dx:dx + w] * query[i].float()).sum(1).amax(0)
                sim = sim.masked_fill(valid[0, dy:dy + h, dx:dx + w] == 0, -float("inf"))
                best = torch.maximum(best, sim)
        out[i] = 1.0 - best
    return out
