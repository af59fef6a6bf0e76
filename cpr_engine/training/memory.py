"""The memory and the location offset: two training-state pieces the scoring tail reads.

- :func:`fill_memory`: per scale, a coreset of every patch of the descriptor bank (greedy k-center
  on cosine distance), stored as M maps' worth of patches. The tail searches it whole beside the K
  retrieved images, so a query patch whose match lies on no retrieved image still finds one: the
  retrieval then only ever lowers the cost, never the coverage, of the full-bank search.
- :func:`location_offset`: per location, how much the training images' mean leave-one-out map lies
  above its own mean; the tail subtracts it from the fine patch scores, so that places that are
  always hard to match (edges of an aligned part, specular spots, the padded border) stop
  dominating. Subtracted, not divided: a defect adds to the score wherever it lies, and a division
  would scale the noise of easy places up and the defects of hard ones down (benchmarks/RESULTS.md).
  The validation split decides whether a model keeps it.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from .. import tail
from ..torch_model import CPRModel

LOO_CHUNK = 8  # training images per leave-one-out batch


@torch.no_grad()
def greedy_coreset(vectors: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """Greedy k-center selection: (n, D) float32 unit rows -> (count,) int64 row ids, count <= n.

    Starts from a seeded random row, then repeatedly adds the row farthest (cosine distance) from
    every row chosen so far.
    """
    n = vectors.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"greedy_coreset: count must be in [1, {n}], got {count}")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.empty(count, dtype=torch.int64)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    distance = 1.0 - vectors @ vectors[int(chosen[0])]
    for i in range(1, count):
        chosen[i] = int(distance.argmax())
        distance = torch.minimum(distance, 1.0 - vectors @ vectors[int(chosen[i])])
    return chosen.to(vectors.device)


@torch.no_grad()
def fill_memory(model: CPRModel, seed: int = 0) -> None:
    """Fill ``memory_4`` / ``memory_8`` and their sources from the (filled) banks."""
    for bank, memory, sources in zip(model.banks, model.memories, model.memory_sources):
        n, d, h, w = bank.shape
        vectors = bank.float().permute(0, 2, 3, 1).reshape(-1, d)
        rows = greedy_coreset(vectors, memory.shape[0] * h * w, seed)
        memory.copy_(vectors[rows].reshape(memory.shape[0], h, w, d).permute(0, 3, 1, 2).to(memory.dtype))
        sources.copy_((rows // (h * w)).reshape(sources.shape))


@torch.no_grad()
def location_offset(model: CPRModel, feats: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """(h_0, w_0) float32 location offset from the training images ``ids`` (bank and memory filled).

    Each image is scored leave-one-out (itself excluded from retrieval and memory) with the model's
    windows and no offset or weighting; the offset is m - mean(m) for m the per-location mean of
    their fused patch-score maps. Those maps are the tail's anomaly maps at the fine patch grid with
    no blur (``tail.score``: one native call on the CPU).
    """
    fine_side = feats[0].shape[-1]
    settings = SimpleNamespace(windows=model.config.windows, grid=model.config.grid,
                               kept_blocks=model.config.kept_blocks, top_k=model.config.top_k,
                               image_size=fine_side, blur_sigma=0.0, top_t=1, foreground_on_map=True)
    state = model.tail_state._replace(location_offset=torch.zeros_like(model.location_offset))
    total = None
    for start in range(0, len(ids), LOO_CHUNK):
        chunk = ids[start:start + LOO_CHUNK].to(feats[0].device)
        taps = [f[chunk] for f in feats]
        fused = tail.score(model.descriptors(taps), taps[0], None, state, settings, chunk, model.ops_impl)[0].sum(0)
        total = fused if total is None else total + fused
    mean_map = total / len(ids)
    return (mean_map - mean_map.mean()).float()
