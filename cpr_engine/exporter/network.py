"""The network part of CPR as one ONNX-exportable module.

Everything with learned weights runs in the graph (backbone taps, both Local Retrieval Branch heads,
the foreground 1x1 map); the scoring tail (codebook histograms of ``feat_4``, histogram matching,
top-K, location-restricted NN search, post-processing) runs in the native kernels of the runtime,
against the codebook and the bank stored beside the graph.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn as nn

from ..foreground import foreground_map
from ..torch_model import CPRModel


class NetworkOutput(NamedTuple):
    """The graph's outputs, in the order and with the names of ``contract.GRAPH_OUTPUTS`` (tests/test_contract.py)."""

    desc_4: torch.Tensor  # (B, D, S/4, S/4) L2-normalized descriptors
    desc_8: torch.Tensor  # (B, D, S/8, S/8)
    foreground: torch.Tensor  # (B, S/4, S/4) in [0, 1] (meaningless when the model has no foreground)
    feat_4: torch.Tensor  # (B, C, S/4, S/4) fine backbone taps (the codebook stage's input)




class NetworkPart(nn.Module):
    """(B, 3, S, S) float RGB in [0, 1] -> :class:`NetworkOutput`.

    Holds a private copy of the model's layers in eval mode, so exporting never touches the
    model it came from (the ONNX tracer runs forward passes).
    """

    def __init__(self, model: CPRModel):
        super().__init__()
        self.model = copy.deepcopy(model).cpu().float().eval()

    def forward(self, images: torch.Tensor) -> NetworkOutput:
        feats = self.model.features(images)
        desc_4, desc_8 = self.model.descriptors(feats)
        fg = foreground_map(feats[0], self.model.fg_weight, self.model.fg_bias)
        return NetworkOutput(desc_4, desc_8, fg, feats[0])
