"""Awkward input sizes shared by the op tests: odd, tiny, non-square, K > N, border windows."""
import numpy as np
import torch

# (B, D, H, W, N, K, window)
NN_SEARCH_CASES = [
    (1, 3, 1, 1, 1, 1, 3),     # 1x1 map: every window position but the centre is outside
    (2, 5, 7, 3, 4, 2, 3),     # non-square, odd
    (1, 16, 9, 11, 3, 5, 3),   # K > N (repeated indices)
    (3, 8, 5, 5, 6, 3, 1),     # r = 1
    (1, 4, 6, 13, 2, 2, 5),    # wider window than the paper's
]

# (B, N, H, W, M, grid)
HIST_CASES = [
    (1, 1, 80, 80, 12, 5),
    (2, 7, 17, 23, 3, 5),      # H, W not divisible by the grid: padding bin in use
    (3, 4, 4, 4, 5, 5),        # map smaller than the grid
    (1, 3, 9, 6, 2, 1),        # one block
]


def unit_descriptors(shape, generator) -> torch.Tensor:
    """Random L2-normalized descriptors along dim 1."""
    x = torch.randn(*shape, generator=generator)
    return torch.nn.functional.normalize(x, dim=1)


def random_hists(n, blocks, bins, rng, zero_fraction=0.3) -> np.ndarray:
    """Random normalized histograms with exact zeros (as real block histograms have)."""
    h = rng.random((n, blocks, bins))
    h[rng.random(h.shape) < zero_fraction] = 0
    h[..., 0] += 1e-3 * (h.sum(-1) == 0)
    return (h / h.sum(-1, keepdims=True)).astype(np.float32)
