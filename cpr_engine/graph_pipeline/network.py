"""The network part of a ``CPRModel`` (input normalisation, backbone, Local Retrieval Branch) in float16."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..torch_model import CPRModel


class HalfNetwork(nn.Module):
    """A float16 copy of a model's backbone and LRB heads; the retrieval state stays with the model.

    ``features`` and ``descriptors`` are ``CPRModel``'s own methods, run on float16 modules:
    ``features((B, 3, S, S) float16 in [0, 1])`` -> [(B, C4, S/4, S/4), (B, C8, S/8, S/8)] float16,
    ``descriptors(taps)`` -> [(B, D, S/4, S/4), (B, D, S/8, S/8)] float16, L2-normalized.
    """

    features = CPRModel.features
    descriptors = CPRModel.descriptors

    def __init__(self, model: CPRModel):
        super().__init__()
        self.backbone = copy.deepcopy(model.backbone).half().eval().to(memory_format=torch.channels_last)
        self.lrb = copy.deepcopy(model.lrb).half().eval()
        self.register_buffer("mean", model.mean.half())
        self.register_buffer("std", model.std.half())
