"""CPRModel: the whole CPR inference pipeline as one ``nn.Module`` whose state is buffers.

Backbone taps -> global retrieval (codebook histograms, robust KL, top-K) -> Local Retrieval
Branch descriptors -> location-restricted NN search per scale (+ the memory, searched whole) ->
location offset and foreground weighting -> fusion, blur, top-T image score. Everything needed at
inference (backbone weights, LRB weights, codebook, training histograms, descriptor bank, foreground
maps, memory, location offset) lives in ``state_dict``.

Retrieval, NN search and post-processing go through :mod:`cpr_engine.ops`: native kernels when
``cpr_engine._C`` is built, the PyTorch reference otherwise (``model.ops_impl`` forces one); inputs
that need gradients always take the reference.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from . import tail
from .config import CPRConfig
from .foreground import foreground_map
from .lrb import LocalRetrievalBranch, RawTapHead

#: where the foreground weights: the anomaly map (and so the image score), the image score only, nowhere
FOREGROUND_MODES = ("map", "score", "off")


class CPROutput(NamedTuple):
    """Model output; field names are also export output names and runtime keys."""

    pred_score: torch.Tensor  # (B,) float32 image scores
    anomaly_map: torch.Tensor  # (B, S, S) float32 pixel scores at the model's input size


def descriptor_widths(config: CPRConfig, channels: tuple[int, int]) -> tuple[int, int]:
    """D of the descriptors per scale: ``config.descriptor_dim``; raw taps keep at most their own
    channels (zero padding would only add search work: cosines are unchanged by it)."""
    if config.descriptor == "raw":
        return tuple(min(config.descriptor_dim, c) for c in channels)
    return (config.descriptor_dim,) * len(channels)


def descriptor_heads(config: CPRConfig, channels: tuple[int, int],
                     widths: tuple[int, int] | None = None) -> nn.ModuleList:
    """One descriptor head per tap: LRB heads, or raw-tap heads when ``config.descriptor == "raw"``
    (of ``widths``, default ``descriptor_widths``)."""
    if config.descriptor == "raw":
        heads = [RawTapHead(c, d) for c, d in zip(channels, widths or descriptor_widths(config, channels))]
    else:
        heads = [LocalRetrievalBranch(c, config.lrb_hidden, config.descriptor_dim) for c in channels]
    return nn.ModuleList(heads).to(memory_format=torch.channels_last)


class CPRModel(nn.Module):
    """CPR with a frozen backbone, two LRB heads and the retrieval state as buffers.

    Args:
        config: hyper-parameters.
        backbone: a ``cpr_engine.backbones.FeatureExtractor`` (stride-4 and stride-8 taps).
        n_train: number of training images N (sizes the bank buffers).
        widths: descriptor D per scale of the raw heads and banks (default ``descriptor_widths``; a
            saved model gives its own, so files written with other widths load as they were).
    Attributes:
        ops_impl: None (default choice of :mod:`cpr_engine.ops`), "native" or "reference"; not saved.
    """

    def __init__(self, config: CPRConfig, backbone: nn.Module, n_train: int, widths: tuple[int, int] | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone
        c4, c8 = backbone.channels
        (d4, d8), s = widths or descriptor_widths(config, backbone.channels), config.image_size
        self.lrb = descriptor_heads(config, backbone.channels, (d4, d8))
        self.register_buffer("mean", torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("centers", torch.zeros(config.n_clusters, c4))
        self.register_buffer("train_hists", torch.zeros(n_train, config.grid ** 2, config.n_clusters + 1))
        fine, coarse = (s // stride for stride in backbone.strides)
        self.register_buffer("bank_4", torch.zeros(n_train, d4, fine, fine))
        self.register_buffer("bank_8", torch.zeros(n_train, d8, coarse, coarse))
        self.register_buffer("fg_weight", torch.zeros(c4))
        self.register_buffer("fg_bias", torch.zeros(()))
        self.register_buffer("bank_fg", torch.ones(n_train, fine, fine))
        m4, m8 = config.memory_images(n_train)
        self.register_buffer("memory_4", torch.zeros(m4, d4, fine, fine))
        self.register_buffer("memory_8", torch.zeros(m8, d8, coarse, coarse))
        self.register_buffer("memory_source_4", torch.zeros(m4, fine, fine, dtype=torch.int64))
        self.register_buffer("memory_source_8", torch.zeros(m8, coarse, coarse, dtype=torch.int64))
        self.register_buffer("memory_index_4", torch.arange(m4)[None], persistent=False)
        self.register_buffer("memory_index_8", torch.arange(m8)[None], persistent=False)
        self.register_buffer("location_offset", torch.zeros(fine, fine))
        self.register_buffer("use_foreground", torch.zeros((), dtype=torch.bool))
        self.ops_impl: str | None = None

    def set_descriptor_heads(self, heads: nn.ModuleList, widths: tuple[int, int]) -> None:
        """Replace the descriptor heads (LRB or raw) and size the banks for their output D per scale."""
        self.lrb = heads.to(self.bank_4.device)
        for name, width in zip(("bank_4", "bank_8", "memory_4", "memory_8"), widths * 2):
            old = getattr(self, name)
            setattr(self, name, torch.zeros(old.shape[0], width, *old.shape[2:], device=old.device))

    @property
    def descriptor_dims(self) -> tuple[int, int]:
        """D of the banks and of the descriptor heads' output, per scale (finest first)."""
        return self.bank_4.shape[1], self.bank_8.shape[1]

    @property
    def banks(self) -> list[torch.Tensor]:
        """Descriptor banks, finest scale first: (N, D_0, h_0, w_0), (N, D_1, h_1, w_1)."""
        return [self.bank_4, self.bank_8]

    @property
    def memories(self) -> list[torch.Tensor]:
        """The memory per scale, finest first: (M_s, D_s, h_s, w_s) coreset of every bank patch."""
        return [self.memory_4, self.memory_8]

    @property
    def memory_sources(self) -> list[torch.Tensor]:
        """Per scale (M_s, h_s, w_s) int64: the training image each memory patch comes from."""
        return [self.memory_source_4, self.memory_source_8]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) float32 RGB in [0, 1] -> backbone taps [(B, C4, S/4, S/4), (B, C8, S/8, S/8)]."""
        return self.backbone((images - self.mean) / self.std)

    def descriptors(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone taps -> L2-normalized LRB descriptors [(B, D, S/4, S/4), (B, D, S/8, S/8)]."""
        # channels-last runs the LRB convolutions 1.3-1.5x faster on CPU (oneDNN) and suits GPU fp16
        return [head(f.contiguous(memory_format=torch.channels_last)) for head, f in zip(self.lrb, features)]

    def histograms(self, feature4: torch.Tensor) -> torch.Tensor:
        """(B, C4, h, w) stride-4 features -> (B, grid^2, M+1) block histograms of codebook ids."""
        return tail.histograms(feature4, self.tail_state, self.config, self.ops_impl)

    @property
    def tail_state(self) -> tail.TailState:
        """The training state the scoring tail searches (this model's buffers)."""
        return tail.TailState(self.centers, self.train_hists, self.banks, self.bank_fg, self.memories,
                              [self.memory_index_4, self.memory_index_8], self.location_offset, self.memory_sources)

    def retrieve(self, feature4: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Top-K training images per query, (B, K) int64, closest first."""
        return tail.retrieve(feature4, self.tail_state, self.config, exclude, self.ops_impl)

    @property
    def foreground_mode(self) -> str:
        """Where the foreground weights: ``"map"`` (the anomaly map, and so the image score), ``"score"``
        (the image score only) or ``"off"`` (the ``use_foreground`` buffer and ``config.foreground_on_map``)."""
        if not bool(self.use_foreground):
            return "off"
        return "map" if self.config.foreground_on_map else "score"

    def set_foreground_mode(self, mode: str) -> None:
        """Set ``use_foreground`` and ``config.foreground_on_map`` for ``mode`` (see :attr:`foreground_mode`)."""
        if mode not in FOREGROUND_MODES:
            raise ValueError(f"foreground mode must be one of {FOREGROUND_MODES}, got {mode!r}")
        self.use_foreground.fill_(mode != "off")
        self.config.foreground_on_map = mode != "score"

    def foreground(self, feature4: torch.Tensor, enabled: bool | None = None) -> torch.Tensor | None:
        """The query's own foreground (B, h, w) float32, or None when the foreground branch is off.

        ``enabled``: whether the branch is on; None reads the ``use_foreground`` buffer, which
        synchronises with the device (a CUDA graph reads it once, before capture).
        """
        if not (bool(self.use_foreground) if enabled is None else enabled):
            return None
        return foreground_map(feature4, self.fg_weight, self.fg_bias)

    def forward(self, images: torch.Tensor, exclude: torch.Tensor | None = None) -> CPROutput:
        """Score a batch.

        Args:
            images: (B, 3, S, S) float32 RGB in [0, 1], S = ``config.image_size``.
            exclude: optional (B,) int64 training index each query must not retrieve
                (leave-one-out scoring of training images).
        Returns:
            CPROutput(pred_score (B,), anomaly_map (B, S, S)).
        """
        return self.score_features(self.features(images), exclude)

    def score_features(self, features: list[torch.Tensor], exclude: torch.Tensor | None = None) -> CPROutput:
        """:meth:`forward` from the backbone taps on: ``features`` [(B, C4, S/4, S/4), (B, C8, S/8, S/8)]
        float32 as :meth:`features` gives them (training scores the same images under many settings
        and computes them once); ``exclude`` as in :meth:`forward`."""
        anomaly_map, score = tail.score(self.descriptors(features), features[0], self.foreground(features[0]),
                                        self.tail_state, self.config, exclude, self.ops_impl)
        return CPROutput(score, anomaly_map)
