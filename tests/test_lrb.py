import torch

from cpr_engine.lrb import InceptionBlock, LocalRetrievalBranch


def test_lrb_paper_shapes_and_unit_norm():
    head = LocalRetrievalBranch(256, 192, 384).eval()
    assert head.inception.out_channels == 256
    x = torch.randn(2, 256, 9, 13)
    y = head(x)
    assert y.shape == (2, 384, 9, 13)
    assert torch.allclose(y.norm(dim=1), torch.ones(2, 9, 13), atol=1e-5)


def test_inception_branch_widths():
    block = InceptionBlock(192)
    assert block.branch1[0].out_channels == 64
    assert block.branch3[0][0].out_channels == 48 and block.branch3[1][0].kernel_size == (3, 3)
    assert block.branch3[1][0].out_channels == 64
    assert block.branch_pool[0].out_channels == 64


def test_lrb_is_location_local_in_1x1_stem():
    head = LocalRetrievalBranch(8, 48, 16).eval()
    x = torch.randn(1, 8, 11, 11)
    y0 = head(x)
    x2 = x.clone()
    x2[..., 0, 0] += 10  # change one corner: only the 3x3 neighbourhood may change
    y1 = head(x2)
    changed = (y1 - y0).abs().amax(1)[0] > 1e-6
    assert changed[0, 0] and not changed[3:, 3:].any()
