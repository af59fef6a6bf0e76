import math

import numpy as np
import pytest
import torch

from cpr_engine.config import CPU_TIME_BUDGET, CPRConfig
from cpr_engine.training.loss import contrastive_loss
from cpr_engine.training.sampling import (exclusion_radius, gather_points, matching_points, sample_negatives,
                                          sample_points)


def test_contrastive_loss_values():
    pos = torch.tensor([1.0, 0.5])       # 0.5 is 0.3 below the 0.8 margin -> 0.027
    neg = torch.tensor([-0.5, 0.3, 0.9])  # 0.3 is 0.5 above -0.2 -> 0.125; 0.9 masked out
    valid = torch.tensor([True, True, False])
    loss = contrastive_loss(pos, neg, valid)
    assert abs(float(loss) - (0.027 / 2 + 0.125 / 2)) < 1e-6
    assert float(contrastive_loss(torch.ones(3), -torch.ones(2), torch.ones(2, dtype=torch.bool))) == 0.0
    assert float(contrastive_loss(torch.ones(0), torch.zeros(1), torch.zeros(1, dtype=torch.bool))) == 0.0


def test_gather_points_reads_pixel_centres():
    maps = torch.arange(16.0).view(1, 1, 4, 4)  # a stride-2 map of an 8x8 image
    xy = torch.tensor([[[1.0, 1.0], [7.0, 3.0]]])  # centres of cells (0,0) and (1,3)
    got = gather_points(maps, xy, 8)
    assert got.tolist() == [[[0.0, 7.0]]]


def test_sample_points_follow_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.zeros(2, 10, 10)
    w[0, 2, 7] = 1.0
    xy, valid = sample_points(w, 50, g)
    assert valid[0].all() and not valid[1].any()
    assert ((xy[0, :, 0] >= 7) & (xy[0, :, 0] < 8) & (xy[0, :, 1] >= 2) & (xy[0, :, 1] < 3)).all()


def test_negatives_are_far_enough():
    g = torch.Generator().manual_seed(1)
    q = torch.rand(3, 64, 2, generator=g) * 32
    feats = torch.randn(3, 5, 8, 8, generator=g)
    r = exclusion_radius(4, 3)
    assert abs(r - 4 * math.sqrt(2)) < 1e-9 and exclusion_radius(8, 1) == 0
    ref, valid = sample_negatives(q, feats, feats, 32, r, g)
    assert ((ref - q).norm(dim=-1)[valid] > r).all()
    assert valid.float().mean() > 0.9


def test_config_defaults_are_the_paper_numbers():
    c = CPRConfig()
    assert (c.top_k, c.n_clusters, c.grid, c.kept_blocks, c.windows, c.blur_sigma, c.top_t, c.descriptor_dim,
            c.image_size, c.kmeans_samples, c.lr, c.weight_decay, c.batch_size) == (
        10, 12, 5, 20, (3, 1), 4.0, 512, 384, 320, 50_000, 1e-3, 1e-2, 32)
    # no steps given: the paper's schedule on a GPU, a time budget on a CPU
    assert c.training_schedule(True, "cuda") == (500, None) and c.training_schedule(False, "cuda") == (40_000, None)
    assert c.training_schedule(False, "cpu") == (40_000, CPU_TIME_BUDGET)
    assert CPRConfig(steps=7).training_schedule(False, "cpu") == (7, None)
    assert CPRConfig(time_budget=5.0).training_schedule(True, "cpu") == (500, 5.0)
    assert c.descriptor == "auto" and c.auto_windows and c.backbone == "efficientnet_lite0_deep"
    assert CPRConfig.from_json(c.to_json()) == c
    assert CPRConfig.preset("faster").descriptor_dim == 16 and CPRConfig.preset("fast").descriptor_dim == 64


@pytest.mark.parametrize("kwargs,match", [
    ({"variant": "fastest"}, "variant must be one of"),
    ({"windows": (2, 1)}, "windows must be two odd sizes"),
    ({"image_size": 100}, "multiple of 8"),
    ({"image_size": 2**40}, "image_size must be a multiple of 8 in \\[32, 4096\\]"),
    ({"n_clusters": 10**9}, "n_clusters must be in \\[2, 4096\\]"),
    ({"keep_blocks": 0}, "keep_blocks"),
    ({"lrb_hidden": 100}, "multiple of 12"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": -3}, "steps must be a positive integer"),
    ({"time_budget": 0}, "time_budget must be a finite number of seconds > 0"),
    ({"time_budget": float("inf")}, "time_budget must be a finite number of seconds > 0"),  # trained forever
    ({"descriptor": "pca"}, "descriptor must be one of"),
    ({"max_windows": (4, 1)}, "max_windows must be two odd sizes"),
    ({"val_fraction": 1.0}, "val_fraction"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CPRConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown keys"):
        CPRConfig.from_dict({"nope": 1})


def test_matching_points_follow_a_shifted_reference():
    g = torch.Generator().manual_seed(1)
    feat_q = torch.randn(2, 6, 10, 10, generator=g)
    feat_r = torch.roll(feat_q, shifts=(2, -1), dims=(2, 3))  # content moved 2 cells down, 1 left
    xy = torch.tensor([[[44.0, 44.0], [28.0, 52.0]]]).repeat(2, 1, 1)  # cell centres of an 80 px image, stride 8
    got = matching_points(xy, feat_q, feat_r, 80, window=5)
    want = (xy / 8).floor() + torch.tensor([-1.0, 2.0])
    assert torch.equal(got, (want + 0.5) * 8)
    assert torch.equal(matching_points(xy, feat_q, feat_r, 80, window=1), xy)  # aligned: the same point
    # outside the window the match is not taken: window 3 reaches 1 cell, the true match is 2 away
    assert not torch.equal(matching_points(xy, feat_q, feat_r, 80, window=3), (want + 0.5) * 8)


def test_query_pool_grows_then_replaces_its_oldest_queries():
    """The pool starts with one batch, adds ceil(batch / QUERY_REUSE) queries a step up to its size,
    then replaces the oldest; returned batches have the documented shapes."""
    import numpy as np

    from cpr_engine.backbones import build_backbone
    from cpr_engine.torch_model import CPRModel
    from cpr_engine.training.queries import QuerySampler
    from cpr_engine.training.trainer import QUERY_REUSE, QueryPool
    from tests.test_supervised import sampler_inputs

    good, fg, source, references, _ = sampler_inputs(size=32)
    cfg = CPRConfig.preset("faster", image_size=32, top_k=2)
    model = CPRModel(cfg, build_backbone(cfg.backbone, pretrained=False), n_train=4).eval()
    pool = QueryPool(model, QuerySampler(good, fg, False, source, references), np.arange(4), batch=3,
                     rng=np.random.default_rng(0))
    assert pool.size == 3 * QUERY_REUSE and pool.fresh == math.ceil(3 / QUERY_REUSE) and pool.filled == 3
    taps, refs, anomaly, fgq = pool.next_batch()  # the initial batch, nothing drawn
    assert pool.filled == 3
    assert [tuple(t.shape) for t in taps] == [(3, c, 32 // s, 32 // s) for c, s in
                                              zip(model.backbone.channels, model.backbone.strides)]
    assert refs.dtype == torch.int64 and anomaly.shape == (3, 32, 32) and anomaly.dtype == torch.bool
    assert fgq.shape == (3, 32, 32)
    pool.next_batch()
    assert pool.filled == 3 + pool.fresh
    while pool.filled < pool.size:
        pool.next_batch()
    before = [t.clone() for t in pool.taps]
    pool.next_batch()  # full: the oldest fresh slots are replaced, the rest kept
    changed = [(b != a).flatten(1).any(1) for b, a in zip(before, pool.taps)]
    assert pool.filled == pool.size and torch.equal(changed[0], changed[1])
    assert int(changed[0].sum()) == pool.fresh and changed[0][:pool.fresh].all() and pool.cursor == pool.fresh
    assert set(pool.refs.tolist()) <= set(references.flatten().tolist())


def test_validation_defects_are_not_confined_to_the_foreground():
    """An object's validation defects fall off its foreground too: a foreground that hides them loses."""
    from cpr_engine.training.queries import QuerySampler
    from cpr_engine.training.selection import validation_queries
    from cpr_engine.training.synthesis import AnomalySource

    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, size=(8, 64, 64, 3), dtype=np.uint8)
    foreground = np.zeros((8, 64, 64), np.float32)
    foreground[:, :, :16] = 1.0  # the object: the left quarter
    sampler = QuerySampler(good, foreground, True, AnomalySource(images=list(good)), np.zeros((8, 2), np.int64))
    queries = validation_queries(sampler, np.arange(2, 8), seed=0)
    assert queries.images.shape == (18, 3, 64, 64) and queries.labels.tolist() == [0, 1, 1] * 6
    assert not queries.masks[0::3].any()  # the clean copies
    off_object = queries.masks[:, :, 16:].sum() / queries.masks.sum()
    assert off_object > 0.65, off_object  # the background is 3/4 of the image (measured 0.78; confining half: 0.48)
    assert queries.exclude.tolist() == np.repeat(np.arange(2, 8), 3).tolist()
