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

# --- native kernels (tests/ops/) -------------------------------------------------------------
# nn_search: more awkward shapes for the native kernels, (B, D, H, W, N, K, window)
NN_SEARCH_NATIVE_CASES = NN_SEARCH_CASES + [
    (2, 7, 2, 3, 3, 2, 5),     # window wider than the map in both directions
    (1, 9, 13, 1, 2, 3, 3),    # one column
    (1, 1, 4, 4, 1, 4, 3),     # D = 1, K > N = 1
    (2, 33, 11, 10, 5, 3, 7),  # D not a multiple of the 4-plane step, window 7
    (1, 6, 9, 9, 4, 2, 9),     # run-time window (no compile-time specialisation on CUDA)
    (0, 4, 3, 3, 2, 2, 3),     # empty batch
]

# several scales in one call: per scale (D, H, W, window), shared (B, N, K)
NN_SEARCH_MULTI_CASES = [
    (2, 5, 3, [(12, 10, 10, 3), (12, 5, 5, 1)]),   # the CPR layout: fine r = 3, coarse r = 1
    (1, 3, 4, [(4, 7, 9, 3), (6, 4, 5, 3), (5, 2, 3, 1)]),  # three scales, different D
]

# top_k: (B, N, k, with exclude)
TOP_K_CASES = [
    (1, 1, 1, False),
    (2, 4, 3, False),
    (3, 7, 10, False),    # k > N: clipped
    (2, 5, 4, True),
    (4, 2, 5, True),      # N = 2 with exclude: one left
    (3, 50, 7, True),
    (2, 1000, 10, False),
]

# postprocess: (B, per-scale (h, w) finest first, out_size, sigma, top_t, with foreground)
POSTPROCESS_CASES = [
    (1, [(80, 80), (40, 40)], 320, 4.0, 512, True),   # the CPR layout
    (2, [(8, 8), (4, 4)], 32, 4.0, 40, False),        # map side 32 > radius 16: reflect
    (1, [(7, 5)], 9, 1.5, 3, True),                   # one scale, non-square
    (2, [(5, 7), (3, 4), (1, 1)], 12, 4.0, 1000, False),  # side 12 <= radius 16: replicate; T > S*S
    (1, [(6, 6), (3, 3)], 6, 0.0, 5, True),           # no blur, no upsampling (6 -> 6)
    (3, [(11, 13), (6, 7)], 50, 2.5, 100, True),
    (1, [(1, 1)], 1, 4.0, 1, False),                  # 1 x 1 everywhere
]


def tied_hists(n, blocks, bins, rng) -> np.ndarray:
    """Histograms built from integer counts (as real ones are), so many blocks are equal."""
    counts = rng.integers(0, 4, size=(n, blocks, bins)).astype(np.float64)
    counts[..., 0] += counts.sum(-1) == 0
    return (counts / counts.sum(-1, keepdims=True)).astype(np.float32)


def made_dir(path):
    """``path`` as a folder that exists (parents made), returned for chaining: ``made_dir(p) / "x.png"``."""
    path.mkdir(parents=True, exist_ok=True)
    return path
