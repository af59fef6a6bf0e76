"""End to end: a small CPRModel gives the same retrieval, scores and maps with the native kernels as
with the PyTorch reference.

Tolerances: identical top-K indices; pred_score rtol 1e-4; anomaly_map atol 1e-4 x its largest
value (float32 rounding through NN search, fusion, blur). float16 banks: native vs reference on the
same fp16 bank with the same tolerances, and within 2e-3 x scale of the float32 model.
"""
import numpy as np
import pytest
import torch

from cpr_engine import CPRConfig, ops
from cpr_engine.backbones import build_backbone
from cpr_engine.torch_model import CPRModel
from tests.helpers.cases import random_hists
from tests.ops.common import assert_close, needs_native

pytestmark = needs_native


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    cfg = CPRConfig.preset("fast", image_size=64, top_k=3)
    n = 6
    model = CPRModel(cfg, build_backbone(cfg.backbone, pretrained=False), n_train=n).eval()
    train = torch.rand(n, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(train)
        vectors = feats[0].permute(0, 2, 3, 1).reshape(-1, feats[0].shape[1])
        model.centers.copy_(vectors[torch.randperm(len(vectors))[: cfg.n_clusters]])
        model.train_hists.copy_(model.histograms(feats[0]))
        # an untrained LRB maps everything to nearly one direction: perturb the bank so the patch
        # scores spread over [0, 2] and the comparison means something
        for bank, d in zip(model.banks, model.descriptors(feats)):
            bank.copy_(torch.nn.functional.normalize(d + 0.05 * torch.randn(d.shape), dim=1))
        model.bank_fg.copy_(torch.rand(model.bank_fg.shape))
        model.fg_weight.copy_(torch.randn(feats[0].shape[1]) * 0.1)
        model.fg_bias.fill_(0.5)
        model.use_foreground.fill_(True)
    test = torch.cat([train[:2], torch.rand(3, 3, 64, 64)])
    return model, test


def _run(model, images, impl, exclude=None):
    model.ops_impl = impl
    try:
        with torch.no_grad():
            index = model.retrieve(model.features(images)[0], exclude)
            return index, model(images, exclude=exclude)
    finally:
        model.ops_impl = None


def _compare(a, b, map_tol=1e-4, score_rtol=1e-4):
    scale = float(b.anomaly_map.abs().max())
    assert_close(a.anomaly_map, b.anomaly_map, atol=map_tol * scale, rtol=0)
    assert_close(a.pred_score, b.pred_score, rtol=score_rtol, atol=1e-6)


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_native_equals_reference(model_and_images, leave_one_out):
    model, images = model_and_images
    exclude = torch.tensor([0, 1, 2, 3, 4]) if leave_one_out else None
    index_n, out_n = _run(model, images, "native", exclude)
    index_r, out_r = _run(model, images, "reference", exclude)
    assert torch.equal(index_n, index_r)
    assert float(out_r.anomaly_map.abs().max()) > 1e-2  # not a trivially flat map
    _compare(out_n, out_r)


def test_default_is_native(model_and_images, monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    model, images = model_and_images
    _, default = _run(model, images, None)
    _, native = _run(model, images, "native")
    assert torch.equal(default.pred_score, native.pred_score)
    assert torch.equal(default.anomaly_map, native.anomaly_map)


def test_fp16_banks(model_and_images):
    model, images = model_and_images
    _, full = _run(model, images, "native")
    banks = [b.clone() for b in model.banks]
    try:
        model.bank_4, model.bank_8 = (b.half() for b in banks)
        _, half_n = _run(model, images, "native")
        _, half_r = _run(model, images, "reference")
    finally:
        model.bank_4, model.bank_8 = banks
    _compare(half_n, half_r)
    _compare(half_n, full, map_tol=2e-3, score_rtol=2e-3)


def test_train_hists_from_random_histograms_keep_the_order():
    """Retrieval alone on many references: identical top-K with real-looking histograms."""
    rng = np.random.default_rng(0)
    refs = torch.from_numpy(random_hists(300, 25, 13, rng))
    query = torch.from_numpy(random_hists(4, 25, 13, rng))
    nat = ops.top_k(ops.hist_match(query, refs, 20, impl="native"), 10, impl="native")
    ref = ops.top_k(ops.hist_match(query, refs, 20, impl="reference"), 10, impl="reference")
    assert torch.equal(nat, ref)
