"""Tests for cpr_engine.backbones: shapes, truncation, freezing, checkpoints, real Lite0 weights."""
import functools
import math
import re

import cv2
import numpy as np
import pytest
import torch
from skimage import data
import torch.nn.functional as F
from torch import nn

from cpr_engine.backbones import BACKBONES, build_backbone, build_classifier, resolve_weights
from cpr_engine.backbones import efficientnet
from cpr_engine.backbones.efficientnet import _SameConv2d

NAMES = ["densenet201", "resnet18", "wide_resnet50_2", "efficientnet_b0", "efficientnet_lite0",
         "efficientnet_lite0_deep"]
CHANNELS = {
    "densenet201": (256, 512),
    "resnet18": (64, 128),
    "wide_resnet50_2": (256, 512),
    "efficientnet_b0": (24, 40),
    "efficientnet_lite0": (24, 40),
    "efficientnet_lite0_deep": (40, 112),
}
# Modules right after the last tap, and the heads: all must be gone from the extractor.
REMOVED = {
    "densenet201": ["features.transition2", "features.denseblock3", "features.norm5", "classifier"],
    "resnet18": ["layer3", "layer4", "fc"],
    "wide_resnet50_2": ["layer3", "layer4", "fc"],
    "efficientnet_b0": ["features.4", "features.8", "classifier"],
    "efficientnet_lite0": ["_blocks.5", "_blocks.15", "_conv_head", "_bn1", "_fc"],
    "efficientnet_lite0_deep": ["_blocks.11", "_blocks.15", "_conv_head", "_bn1", "_fc"],
}
TORCHVISION_FILES = {
    "densenet201": "densenet201-c1103571.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "wide_resnet50_2": "wide_resnet50_2-95faca4d.pth",
    "efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Small CPU workloads: one intra-op thread avoids OpenMP spin contention on busy machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def random_classifier(name):
    return build_classifier(name, pretrained=False)


@functools.cache
def random_extractor(name):
    return build_backbone(name, pretrained=False)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def run_with_hooks(model, x, names, take=lambda inputs, output: output.clone()):
    """Run ``model`` on ``x``; return its output and ``take(inputs, output)`` of each module in ``names``."""
    seen = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda module, inputs, output, n=n: seen.__setitem__(n, take(inputs, output))) for n in names]
    with torch.no_grad():
        result = model(x)
    for hook in hooks:
        hook.remove()
    return result, [seen[n] for n in names]


def test_registry_lists_all_backbones():
    assert sorted(BACKBONES) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(320, 320), (97, 131)])
def test_output_shapes(name, size):
    extractor = random_extractor(name)
    h, w = size
    with torch.no_grad():
        f4, f8 = extractor(torch.randn(1, 3, h, w))
    assert extractor.channels == CHANNELS[name]
    round8 = math.floor if name == "densenet201" else math.ceil  # DenseNet: 2x2 average pool
    s1, s2 = extractor.strides
    assert (s1, s2) == ((8, 16) if name == "efficientnet_lite0_deep" else (4, 8))
    assert f4.shape == (1, CHANNELS[name][0], math.ceil(h / s1), math.ceil(w / s1))
    assert f8.shape == (1, CHANNELS[name][1], round8(h / s2), round8(w / s2))
    assert f4.dtype == f8.dtype == torch.float32
    if size == (320, 320):
        assert f4.shape[-2:] == (320 // s1,) * 2 and f8.shape[-2:] == (320 // s2,) * 2


@pytest.mark.parametrize("name", NAMES)
def test_extractor_is_truncated_after_last_tap(name):
    extractor, classifier = random_extractor(name), random_classifier(name)
    modules = dict(extractor.body.named_modules())
    assert extractor.tap_names[-1] == extractor.stages[-1]
    assert all(tap in modules for tap in extractor.tap_names)
    for gone in REMOVED[name]:
        assert gone in dict(classifier.named_modules())
        assert gone not in modules
    kept = sum(n_params(classifier.get_submodule(stage)) for stage in extractor.stages)
    assert n_params(extractor) == kept < n_params(classifier) / 4


@pytest.mark.parametrize("name", NAMES)
def test_extractor_is_frozen(name):
    extractor = random_extractor(name)
    assert not any(p.requires_grad for p in extractor.parameters())
    assert not extractor.training
    extractor.train()
    assert not any(m.training for m in extractor.modules())


@pytest.mark.parametrize("name", NAMES)
def test_classifier_state_dict_loads_and_extractor_matches_taps(name, tmp_path):
    classifier = random_classifier(name)
    path = tmp_path / "weights.pth"
    torch.save(classifier.state_dict(), path)
    extractor = build_backbone(name, weights=str(path))
    reference = classifier.state_dict()
    for key, value in extractor.body.state_dict().items():
        assert torch.equal(value, reference[key]), key
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = extractor(x)
    for got, expected in zip(features, run_with_hooks(classifier, x, extractor.tap_names)[1]):
        if extractor.pool:  # the depthwise local mean equals avg_pool2d (zero padding counted)
            expected = torch.nn.functional.avg_pool2d(expected, extractor.pool, 1, extractor.pool // 2)
        # the extractor runs channels-last (and Lite0 with its BatchNorms folded): float rounding apart
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_checkpoint_loads(wrapper, tmp_path):
    state = random_classifier("resnet18").state_dict()
    torch.save({wrapper: state, "epoch": 3}, tmp_path / "w.pth")
    model = build_classifier("resnet18", weights=tmp_path / "w.pth")
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_densenet_accepts_legacy_keys(tmp_path):
    state = random_classifier("densenet201").state_dict()
    # Pre-2018 torchvision file: "norm.1" instead of "norm1", no num_batches_tracked buffers.
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value
              for key, value in state.items() if not key.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock1.denselayer1.norm1.weight" not in legacy
    torch.save(legacy, tmp_path / "legacy.pth")
    loaded = build_classifier("densenet201", weights=tmp_path / "legacy.pth").state_dict()
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key


def test_mismatching_checkpoint_names_keys(tmp_path):
    state = dict(random_classifier("resnet18").state_dict())
    del state["layer1.0.conv1.weight"]
    state["head.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight") as err:
        build_backbone("resnet18", weights=tmp_path / "bad.pth")
    assert "head.extra.weight" in str(err.value)


def test_wrong_shape_is_value_error(tmp_path):
    state = dict(random_classifier("resnet18").state_dict())
    state["fc.weight"] = torch.zeros(10, 512)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="fc.weight"):
        build_classifier("resnet18", weights=tmp_path / "bad.pth")


@pytest.mark.parametrize("name", sorted(TORCHVISION_FILES))
def test_missing_hub_weights_say_where_to_put_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / TORCHVISION_FILES[name]
    with pytest.raises(FileNotFoundError) as err:
        build_backbone(name)
    assert str(expected) in str(err.value)
    assert "--weights PATH" in str(err.value)
    expected.parent.mkdir(parents=True)
    expected.touch()
    assert resolve_weights(name) == str(expected)


def test_torch_home_defaults_to_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "torch" / "hub" / "checkpoints"))):
        resolve_weights("resnet18")


def test_missing_explicit_weights_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.pth"))):
        build_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth")


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="efficientnet_lite0") as err:
        build_backbone("vgg16", pretrained=False)
    assert all(name in str(err.value) for name in NAMES)


def test_weights_with_pretrained_false_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="pretrained=False"):
        build_backbone("resnet18", weights=tmp_path / "w.pth", pretrained=False)


# ------------------------------------------------------------------ real Lite0 ImageNet weights

def imagenet_input(image, mean, std):
    """uint8 (H, W, 3) RGB -> (1, 3, 224, 224) float32: shorter side to 256, center crop 224."""
    h, w = image.shape[:2]
    scale = 256 / min(h, w)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    crop = image[top:top + 224, left:left + 224].astype(np.float32) / 255
    crop = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def lite0():
    return build_classifier("efficientnet_lite0"), build_backbone("efficientnet_lite0")


@pytest.mark.parametrize("image, classes", [
    ("chelsea", {281, 282, 283, 284, 285}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    ("coffee", {967, 968, 504}),  # espresso, cup, coffee mug
])
def test_lite0_weights_classify_real_photos(lite0, image, classes):
    classifier, extractor = lite0
    x = imagenet_input(getattr(data, image)(), extractor.mean, extractor.std)
    logits, taps = run_with_hooks(classifier, x, extractor.tap_names)
    top5 = logits.topk(5).indices[0].tolist()
    assert top5[0] in classes, top5
    with torch.no_grad():
        features = extractor(x)
    for got, expected in zip(features, taps):
        # channels-last in the extractor, NCHW in the classifier: float rounding apart
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def _bn_mismatch(extractor, x, bn_name, rows=slice(None)):
    """Mean squared z-score, under ``bn_name``'s running statistics, of its input's channel means."""
    bn = extractor.body.get_submodule(bn_name)
    (inputs,) = run_with_hooks(extractor, x, [f"body.{bn_name}"], take=lambda inputs, output: inputs[0])[1]
    mean = inputs[:, :, rows].mean((0, 2, 3))
    return (((mean - bn.running_mean) ** 2) / (bn.running_var + bn.eps)).mean().item()


def test_lite0_weights_expect_half_normalization_and_tf_same_padding(lite0, monkeypatch):
    """BatchNorm running statistics of the real weights pin down the preprocessing they were trained with."""
    # run each BatchNorm as its own module (not folded into its convolution), so hooks see its input
    monkeypatch.setattr(efficientnet, "_conv_bn", lambda conv, bn, x: bn(conv(x)))
    extractor = lite0[1]
    photos = [data.chelsea(), data.coffee()]
    assert extractor.mean == extractor.std == (0.5, 0.5, 0.5)
    x = torch.cat([imagenet_input(p, extractor.mean, extractor.std) for p in photos])
    imagenet = torch.cat([imagenet_input(p, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) for p in photos])
    assert _bn_mismatch(extractor, x, "_bn0") < _bn_mismatch(extractor, imagenet, "_bn0") / 2

    # First output row of the first stride-2 depthwise conv: TF "SAME" pads only bottom/right;
    # symmetric padding makes that row's statistics disagree with the weights'.
    symmetric = build_backbone("efficientnet_lite0")
    for module in symmetric.modules():
        if isinstance(module, _SameConv2d):
            module.__class__ = nn.Conv2d
            module.padding = tuple((k - 1) // 2 for k in module.kernel_size)
    first_row = slice(0, 1)
    assert (_bn_mismatch(extractor, x, "_blocks.1._bn1", first_row)
            < _bn_mismatch(symmetric, x, "_blocks.1._bn1", first_row) / 4)


def _tf_same_reference(x, weight, stride, groups):
    """TensorFlow "SAME": ceil(n / stride) outputs, the padding's odd pixel at the bottom/right."""
    pads = []
    for n, k in zip(reversed(x.shape[-2:]), reversed(weight.shape[-2:])):
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), weight, None, stride, 0, 1, groups)


@pytest.mark.parametrize("size", [(7, 9), (16, 16), (33, 20)])
@pytest.mark.parametrize("kernel, stride, groups", [(1, 1, 1), (3, 1, 6), (5, 1, 6), (3, 2, 6), (5, 2, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lite_conv_with_folded_batch_norm_equals_conv_then_batch_norm(size, kernel, stride, groups, channels_last):
    torch.manual_seed(0)
    conv = efficientnet._lite_conv(6, 12 if groups == 1 else 6, kernel, stride, groups)
    bn = efficientnet._lite_bn(conv.out_channels)
    with torch.no_grad():
        for tensor, (low, high) in [(bn.running_mean, (-1, 1)), (bn.running_var, (0.1, 3)),
                                    (bn.weight, (-2, 2)), (bn.bias, (-1, 1))]:
            tensor.uniform_(low, high)
    x = torch.randn(2, 6, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    reference = _tf_same_reference(x, conv.weight, stride, groups)
    assert reference.shape[-2:] == tuple(-(-n // stride) for n in size)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), reference, rtol=1e-5, atol=1e-5)
        bn.eval()
        expected = F.batch_norm(reference, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        torch.testing.assert_close(efficientnet._conv_bn(conv, bn, x), expected, rtol=1e-5, atol=1e-5)
        bn.train()  # training mode: the batch's statistics, as BatchNorm itself
        expected = F.batch_norm(reference, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        torch.testing.assert_close(efficientnet._conv_bn(conv, bn, x), expected, rtol=1e-5, atol=1e-5)


def test_extractor_runs_a_cpu_batch_in_chunks_with_the_same_taps(monkeypatch):
    from cpr_engine.backbones import CPU_CHUNK

    extractor = build_backbone("efficientnet_lite0_deep", pretrained=False)
    x = torch.rand(2 * CPU_CHUNK + 1, 3, 48, 40)
    whole = extractor._taps(x)
    calls, taps = [], extractor._taps
    monkeypatch.setattr(extractor, "_taps", lambda images: calls.append(images.shape[0]) or taps(images))
    with torch.no_grad():
        chunked = extractor(x)
    assert calls == [CPU_CHUNK, CPU_CHUNK + 1]  # the last chunk takes the rest: no image alone
    for got, want in zip(chunked, whole):
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
