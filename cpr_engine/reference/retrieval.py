"""Global retrieval ("target"): codebook ids, block-wise histograms, robust KL, top-K.

Plain PyTorch reference (method page, section 2). The native kernels of ``cpr_engine.ops``
must match these functions.
"""
from __future__ import annotations

import torch

KL_EPS = 1e-8


def codebook_assign(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Id of the nearest codebook center (squared L2) for every feature vector.

    Args:
        features: (B, C, H, W) float.
        centers: (M, C) float.
    Returns:
        (B, H, W) int64 ids in [0, M).
    Note:
        Uses ||c||^2 - 2 x.c (the ||x||^2 term does not change the argmin), which exports to ONNX.
    """
    b, c, h, w = features.shape
    if centers.dim() != 2 or centers.shape[1] != c:
        raise ValueError(f"codebook_assign: centers must be (M, {c}), got {tuple(centers.shape)}")
    x = features.permute(0, 2, 3, 1).reshape(-1, c)
    d = (centers * centers).sum(1)[None, :] - 2.0 * x @ centers.t()
    return d.argmin(1).reshape(b, h, w)


def block_histogram(ids: torch.Tensor, n_codes: int, grid: int) -> torch.Tensor:
    """Normalized histogram of codebook ids in each block of a grid x grid split.

    The id map is padded to ``grid * ceil(H / grid)`` (same for W); padding counts as bin 0 and
    ids shift by +1, so there are ``n_codes + 1`` bins.

    Args:
        ids: (B, H, W) int64 in [0, n_codes).
        n_codes: number of codebook centers M.
        grid: blocks per side S.
    Returns:
        (B, S*S, M+1) float32, each row summing to 1 (blocks in row-major order).
    """
    b, h, w = ids.shape
    # ceil division written with non-negative operands: ONNX integer Div truncates, so the
    # usual -(-h // grid) would export as floor, not ceil, when grid does not divide h
    bh, bw = (h + grid - 1) // grid, (w + grid - 1) // grid
    shifted = torch.nn.functional.pad(ids + 1, (0, bw * grid - w, 0, bh * grid - h), value=0)
    blocks = shifted.reshape(b, grid, bh, grid, bw).permute(0, 1, 3, 2, 4).reshape(b, grid * grid, bh * bw)
    bins = torch.arange(n_codes + 1, device=ids.device)
    counts = (blocks[..., None] == bins).sum(2, dtype=torch.float32)
    return counts / float(bh * bw)


def codebook_histogram(features: torch.Tensor, centers: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``codebook_histogram`` op: (B, C, H, W) features -> (ids (B, H, W) int64, hists (B, grid^2, M+1) float32)."""
    ids = codebook_assign(features, centers)
    return ids, block_histogram(ids, centers.shape[0], grid)


def hist_match(query: torch.Tensor, refs: torch.Tensor, kept_blocks: int) -> torch.Tensor:
    """Robust block-wise KL distance of each query to each reference.

    Per block KL(q || r) with ``KL_EPS`` added to both; the ``kept_blocks`` smallest block
    distances are summed (the largest blocks, where a defect may sit, are dropped).

    Args:
        query: (B, S*S, M+1) float32 histograms.
        refs: (N, S*S, M+1) float32 histograms.
        kept_blocks: number of blocks summed, 1 <= kept_blocks <= S*S.
    Returns:
        (B, N) float32 distances.
    """
    if query.shape[1:] != refs.shape[1:]:
        raise ValueError(
            f"hist_match: query (B, S*S, M+1) and refs (N, S*S, M+1) differ: "
            f"{tuple(query.shape)} vs {tuple(refs.shape)}")
    if not 1 <= kept_blocks <= query.shape[1]:
        raise ValueError(f"hist_match: kept_blocks must be in [1, {query.shape[1]}], got {kept_blocks}")
    q = query.float() + KL_EPS
    r = refs.float() + KL_EPS
    # sum_m q log q - sum_m q log r, per (query, ref, block)
    q_entropy = (q * q.log()).sum(-1)  # (B, S*S)
    cross = torch.einsum("bsm,nsm->bns", q, r.log())  # (B, N, S*S)
    per_block = q_entropy[:, None, :] - cross
    return per_block.sort(dim=-1).values[..., :kept_blocks].sum(-1)


def top_k(distances: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the k closest references per query, closest first; ties go to the lower index.

    Args:
        distances: (B, N) float.
        k: wanted references; clipped to N (N - 1 with ``exclude``).
        exclude: optional (B,) int64 reference index to leave out per query (a training image
            queried against its own set).
    Returns:
        (B, min(k, N')) int64.
    """
    b, n = distances.shape
    d = distances.clone()
    if exclude is not None:
        d[torch.arange(b, device=d.device), exclude] = float("inf")
        n -= 1
    if n < 1:
        raise ValueError("top_k: no reference left to retrieve (N = 1 with exclude)")
    return d.sort(dim=1, stable=True).indices[:, : min(k, n)]
