import math

import pytest
import torch

from cpr_engine.config import CPRConfig
from cpr_engine.training.loss import contrastive_loss
from cpr_engine.training.sampling import exclusion_radius, gather_points, sample_negatives, sample_points


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
    assert c.training_steps(True) == 500 and c.training_steps(False) == 40_000
    assert CPRConfig.from_json(c.to_json()) == c
    assert CPRConfig.preset("faster").descriptor_dim == 16 and CPRConfig.preset("fast").descriptor_dim == 64


@pytest.mark.parametrize("kwargs,match", [
    ({"variant": "fastest"}, "variant must be one of"),
    ({"windows": (2, 1)}, "windows must be two odd sizes"),
    ({"image_size": 100}, "multiple of 8"),
    ({"keep_blocks": 0}, "keep_blocks"),
    ({"lrb_hidden": 100}, "multiple of 12"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CPRConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown keys"):
        CPRConfig.from_dict({"nope": 1})
