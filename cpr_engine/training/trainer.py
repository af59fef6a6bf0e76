"""Fit a CPRModel on good images: retrieval state, foreground, local metric, bank, threshold.

Stages (method page, sections 2-6):
1. frozen backbone features of every training image;
2. codebook (k-means) and block histograms; top-K retrieval of each training image among the
   others;
3. foreground LDA (objects only);
4. the Local Retrieval Branch, trained with synthetic anomalies (plus, when given, a few real defects:
   section 7b) and a contrastive loss;
5. the descriptor bank and its memory (a coreset of every training patch); the location offset;
6. leave-one-out scores of the training images -> the decision threshold.
Windows, descriptor heads (learned LRB or raw taps), the foreground branch and the location offset
are chosen from the training images (:mod:`.selection`); no stage looks at test data.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import CPRConfig
from ..errors import InputError
from ..foreground import fit_foreground, foreground_map
from ..inputs import good_score_threshold, score_bound
from ..reference import hist_match, top_k
from ..lrb import RawTapHead
from ..preprocess import channels_first
from ..torch_model import FOREGROUND_MODES, CPRModel, descriptor_heads
from .loss import contrastive_loss
from .memory import fill_memory, location_offset
from .sampling import exclusion_radius, gather_points, matching_points, sample_negatives, sample_points
from .queries import QuerySampler, RealDefects
from .real_defects import P_PASTE, P_REAL_DEFECT, check_defects
from .selection import (ValidationQueries, best_candidate, choose_windows, foreground_metrics, validation_metrics,
                        validation_outputs, validation_queries, validation_split)
from .synthesis import AnomalySource

log = logging.getLogger(__name__)

FEATURE_CHUNK = 16


@dataclass
class TrainReport:
    """What training measured; stored in the model file's metadata."""

    is_texture: bool
    n_train: int
    steps: int
    final_loss: float | None  # None when no local metric was trained (raw descriptors)
    threshold: float
    threshold_source: str  # how the threshold was set (``inputs.good_score_threshold``)
    loo_scores: list = field(default_factory=list)
    pixel_normal: tuple = (0.0, 1.0)  # (median, max) pixel score of the leave-one-out maps
    foreground: str = "off"  # where the foreground weights at inference: "map", "score" (image score only) or "off"
    # None when trained on good images only; else real defects used and how (section 7b)
    supervised: dict | None = None
    descriptor: str = "learned"  # descriptor heads kept: "learned" (LRB) or "raw" (backbone taps)
    windows: list = field(default_factory=list)  # search windows used
    foreground_fitted: bool = False  # the foreground LDA was fitted (objects); kept only if it helped
    location_offset: bool = False  # the training images' per-location excess is subtracted from the fine map
    memory_images: tuple = (0, 0)  # (M_fine, M_coarse): maps' worth of memory patches per scale
    n_validation: int = 0  # training images held out of LRB training to choose the model
    selection: list = field(default_factory=list)  # validation metrics of every candidate
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; else a device this machine has: ``cpu``, ``cuda`` or
    ``cuda:N`` (InputError naming the problem otherwise, before any work)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r}: this machine has no CUDA device usable by torch {torch.__version__}")
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"device {device!r}: this machine has {count} CUDA device(s)")
    return resolved


@torch.no_grad()
def _features(model: CPRModel, images: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    chunks = [model.features(images[i:i + FEATURE_CHUNK].to(device)) for i in range(0, len(images), FEATURE_CHUNK)]
    return [torch.cat([c[s] for c in chunks]) for s in range(2)]


def fit_retrieval(model: CPRModel, feature4: torch.Tensor, seed: int) -> torch.Tensor:
    """Fit the codebook and training histograms; return each image's top-K among the others (N, K')."""
    from sklearn.cluster import KMeans

    cfg = model.config
    n, c = feature4.shape[:2]
    vectors = feature4.permute(0, 2, 3, 1).reshape(-1, c)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(len(vectors), cfg.kmeans_samples), replace=False)
    sample = vectors[torch.from_numpy(rows).to(vectors.device)].cpu().numpy().astype(np.float64)
    kmeans = KMeans(cfg.n_clusters, n_init=cfg.kmeans_n_init, random_state=seed).fit(sample)
    model.centers.copy_(torch.from_numpy(kmeans.cluster_centers_).float())
    hists = torch.cat([model.histograms(feature4[i:i + FEATURE_CHUNK]) for i in range(0, n, FEATURE_CHUNK)])
    model.train_hists.copy_(hists)
    dist = hist_match(hists, hists, cfg.kept_blocks)
    return top_k(dist, cfg.top_k, exclude=torch.arange(n, device=dist.device))


def fit_foreground_state(model: CPRModel, feature4: torch.Tensor, seed: int) -> bool:
    """Fit the foreground LDA into the model and fill ``bank_fg``; False when it was disabled."""
    fitted = fit_foreground(feature4, model.config.lda_samples, seed)
    if fitted is None:
        return False
    weight, bias = fitted
    model.fg_weight.copy_(weight)
    model.fg_bias.fill_(bias)
    model.use_foreground.fill_(True)
    model.bank_fg.copy_(foreground_map(feature4, model.fg_weight, model.fg_bias))
    return True


def _pair_cosine(desc_q, desc_r, xy_q, xy_r, size):
    a = F.normalize(gather_points(desc_q, xy_q, size), dim=1)
    b = F.normalize(gather_points(desc_r, xy_r, size), dim=1)
    return (a * b).sum(1)  # (B, P)


def local_metric_loss(model: CPRModel, feats_q, feats_r, anomaly: torch.Tensor, fg: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
    """Contrastive loss of one batch, summed over both scales.

    Positives pair a normal query point with its best backbone-feature match inside the search
    window of the reference (the same point when the window is 1, as in the paper), so that images
    that are not aligned do not teach the metric to match different content.

    Args:
        feats_q, feats_r: backbone taps of queries and their references, [(B, C4, h, w), (B, C8, ...)].
        anomaly: (B, S, S) bool synthetic anomaly masks (CPU).
        fg: (B, S, S) float32 foreground weights of the queries (CPU).
    """
    cfg, size, n = model.config, model.config.image_size, model.config.n_points
    dev = feats_q[0].device
    b = anomaly.shape[0]
    descs = model.descriptors([torch.cat([q, r]) for q, r in zip(feats_q, feats_r)])
    normal = (~anomaly).float()
    pos_xy, pos_ok = sample_points(fg * normal, n, generator)
    neg_xy, neg_ok = sample_points(normal, n, generator)
    anom_xy, anom_ok = sample_points(anomaly.float(), n, generator)
    pos_xy, pos_ok, neg_xy, neg_ok, anom_xy, anom_ok = (
        t.to(dev) for t in (pos_xy, pos_ok, neg_xy, neg_ok, anom_xy, anom_ok))
    loss = torch.zeros((), device=dev)
    for desc, fq, fr, stride, window in zip(descs, feats_q, feats_r, model.backbone.strides, cfg.windows):
        dq, dr = desc[:b], desc[b:]
        ref_xy, far_ok = sample_negatives(neg_xy, fq, fr, size, exclusion_radius(stride, window), generator)
        with torch.no_grad():
            match_xy = matching_points(pos_xy, fq, fr, size, window)
        pos = _pair_cosine(dq, dr, pos_xy, match_xy, size)[pos_ok]
        neg = torch.cat([_pair_cosine(dq, dr, neg_xy, ref_xy, size), _pair_cosine(dq, dr, anom_xy, anom_xy, size)], 1)
        neg_valid = torch.cat([neg_ok & far_ok, anom_ok], 1)
        loss = loss + contrastive_loss(pos, neg.flatten(), neg_valid.flatten(), cfg.pos_margin, cfg.neg_margin)
    return loss


QUERY_REUSE = 4  # each drawn training query (and its backbone taps) serves about this many steps
POOL_BYTES = 1 << 30  # cap on the query pool's backbone taps


class QueryPool:
    """Training queries with their backbone taps, each used in about ``QUERY_REUSE`` batches.

    The backbone pass over fresh queries is a third of a CPU training step; here the pool starts
    with one batch of queries and each step adds ``ceil(batch / QUERY_REUSE)`` new ones, into a
    ring of ``batch * QUERY_REUSE`` (fewer when the taps would pass ``POOL_BYTES``) whose oldest
    queries they replace once it is full; each step trains on a random ``batch`` of the pool.

    Args:
        model: gives ``features``; sampler: draws queries; query_ids: images that may be queries.
        batch: queries per step; rng: the trainer's generator (all draws come from it).
    """

    def __init__(self, model: CPRModel, sampler: QuerySampler, query_ids: np.ndarray, batch: int,
                 rng: np.random.Generator):
        self.model, self.sampler, self.query_ids, self.batch, self.rng = model, sampler, query_ids, batch, rng
        s = model.config.image_size
        tap_bytes = 4 * sum(c * (s // stride) ** 2 for c, stride in zip(model.backbone.channels, model.backbone.strides))
        self.size = max(batch, min(batch * QUERY_REUSE, POOL_BYTES // tap_bytes))
        self.fresh = -(-batch // QUERY_REUSE)  # each query is in about batch / fresh batches
        self.cursor = 0  # next slot to replace once the ring is full
        self.started = False
        self.taps, self.refs, self.anomaly, self.fg = self._draw(batch)

    @property
    def filled(self) -> int:
        """Queries in the pool now."""
        return len(self.refs)

    @torch.no_grad()
    def _draw(self, n: int):
        ids = self.rng.choice(self.query_ids, size=n, replace=n > len(self.query_ids))
        columns = self.rng.integers(0, self.sampler.n_references, size=n)
        drawn = [self.sampler.draw(int(i), int(c), self.rng) for i, c in zip(ids, columns)]
        images = torch.from_numpy(channels_first(np.stack([q.image for q in drawn])))
        taps = _features(self.model, images, self.model.bank_4.device)
        return (taps, torch.tensor([q.reference for q in drawn]), torch.from_numpy(np.stack([q.anomaly for q in drawn])),
                torch.from_numpy(np.stack([q.foreground for q in drawn])))

    def _add(self, taps, refs, anomaly, fg) -> None:
        grow = min(len(refs), self.size - self.filled)
        if grow:
            self.taps = [torch.cat([p, t[:grow]]) for p, t in zip(self.taps, taps)]
            self.refs, self.anomaly, self.fg = (torch.cat([p, t[:grow]]) for p, t in
                                                ((self.refs, refs), (self.anomaly, anomaly), (self.fg, fg)))
        if grow < len(refs):
            slots = torch.from_numpy((self.cursor + np.arange(len(refs) - grow)) % self.size)
            self.cursor = int(slots[-1] + 1) % self.size
            for pool_tap, tap in zip(self.taps, taps):
                pool_tap[slots.to(pool_tap.device)] = tap[grow:]
            self.refs[slots], self.anomaly[slots], self.fg[slots] = refs[grow:], anomaly[grow:], fg[grow:]

    def next_batch(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add ``fresh`` new queries (the first call trains on the initial batch), then a random batch.

        Returns:
            query taps [(B, C4, h4, w4), (B, C8, h8, w8)] on the model's device, reference ids (B,)
            int64, anomaly masks (B, S, S) bool and foreground (B, S, S) float32 (CPU).
        """
        if self.started:
            self._add(*self._draw(self.fresh))
        self.started = True
        pick = torch.from_numpy(self.rng.choice(self.filled, size=self.batch, replace=False))
        return [t[pick.to(t.device)] for t in self.taps], self.refs[pick], self.anomaly[pick], self.fg[pick]


def train_local_metric(model: CPRModel, feats, sampler: QuerySampler, query_ids: np.ndarray, steps: int,
                       seconds: float | None, run_dir: Path | None, progress: bool) -> tuple[float, int]:
    """Train the LRB heads for ``steps`` steps or ``seconds`` seconds, whichever ends first.

    Args:
        feats: backbone taps of the N training images.
        sampler: makes each training sample (query, anomaly mask, foreground, reference).
        query_ids: training images that may be queries (the validation images are not).
    Returns:
        (mean loss of the last 10 % of steps, steps run).
    """
    cfg = model.config
    dev = feats[0].device
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.lrb.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.lrb.train()
    batch = min(cfg.batch_size, len(query_ids))
    checkpoint_every = max(1, steps // 5)
    losses = []
    log_file = open(run_dir / "train.log", "w") if run_dir else None  # one log per run, never appended
    start = time.monotonic()
    bar = tqdm(range(1, steps + 1), desc="train LRB", disable=not progress, dynamic_ncols=True)
    pool = QueryPool(model, sampler, query_ids, batch, rng)
    for step in bar:
        feats_q, refs, anomaly, fg = pool.next_batch()
        feats_r = [f[refs.to(dev)] for f in feats]
        loss = local_metric_loss(model, feats_q, feats_r, anomaly, fg, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        out_of_time = seconds is not None and time.monotonic() - start > seconds
        last = step == steps or out_of_time
        if log_file and (step % 10 == 0 or last):
            log_file.write(json.dumps({"step": step, "loss": float(np.mean(losses[-10:])), "time": time.time()}) + "\n")
            log_file.flush()
        if run_dir and (step % checkpoint_every == 0 or last):
            ckpt = run_dir / "checkpoints"
            ckpt.mkdir(exist_ok=True)
            torch.save(model.lrb.state_dict(), ckpt / f"lrb_step{step:06d}.pt")
        if out_of_time:
            break
    bar.close()
    if log_file:
        log_file.close()
    model.lrb.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return (float(np.mean(tail)) if tail else float("nan")), len(losses)


@torch.no_grad()
def fill_bank(model: CPRModel, feats) -> None:
    """Descriptors of every training image into ``bank_4`` / ``bank_8``, then the memory from them."""
    n = feats[0].shape[0]
    for i in range(0, n, FEATURE_CHUNK):
        descs = model.descriptors([f[i:i + FEATURE_CHUNK] for f in feats])
        for bank, d in zip(model.banks, descs):
            bank[i:i + FEATURE_CHUNK] = d.to(bank.dtype)
    fill_memory(model, model.config.seed)


@torch.no_grad()
def leave_one_out_scores(model: CPRModel, feats: list[torch.Tensor],
                         batch: int = 8) -> tuple[np.ndarray, tuple[float, float]]:
    """Score each training image with itself excluded from retrieval, from the training images'
    backbone taps ``feats`` (per scale (N, C_s, h_s, w_s), on the model's device).

    Returns:
        scores (N,) float32, and (median, max) of all their anomaly-map pixels: the level of
        normal surface, used to scale heat-map overlays.
    """
    scores, medians, maxima = [], [], []
    n, device = feats[0].shape[0], feats[0].device
    for i in range(0, n, batch):
        out = model.score_features([f[i:i + batch] for f in feats],
                                   exclude=torch.arange(i, min(i + batch, n), device=device))
        scores.append(out.pred_score.cpu())
        medians.append(float(out.anomaly_map.median()))
        maxima.append(float(out.anomaly_map.max()))
    return torch.cat(scores).numpy(), (float(np.median(medians)), float(np.max(maxima)))


def _full_size(maps: torch.Tensor, size: int) -> np.ndarray:
    """(B, h, w) float32 maps -> (B, size, size) float32 NumPy (bilinear)."""
    return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()


def real_defect_queries(model: CPRModel, images_u8: np.ndarray, masks: np.ndarray, device: torch.device,
                        has_fg: bool) -> RealDefects:
    """Foreground and retrieved training images of real defective images (retrieval state fitted).

    Args:
        images_u8: (M, S, S, 3) uint8 defective images; masks: (M, S, S) bool.
    """
    size = model.config.image_size
    images = torch.from_numpy(channels_first(images_u8))
    feature4 = _features(model, images, device)[0]
    with torch.no_grad():
        references = model.retrieve(feature4).cpu().numpy()
        fg = (_full_size(foreground_map(feature4, model.fg_weight, model.fg_bias), size) if has_fg
              else np.ones((len(images_u8), size, size), np.float32))
    return RealDefects(images_u8, masks, fg, references)


def choose_model(model: CPRModel, feats, heads: dict[str, torch.nn.ModuleList], has_fg: bool,
                 windows: list[tuple[int, int]], queries: ValidationQueries | None, offset_ids: torch.Tensor,
                 device: torch.device) -> tuple[dict, list[dict]]:
    """Score every (descriptor heads, windows, location offset on/off, foreground mode) candidate on
    the validation queries.

    ``windows[0]`` goes with every descriptor; the others (the global search) only with the raw
    taps, whose 40 / 112 channels keep a whole-image search affordable (384-d learned descriptors
    would make it about ten times slower than the windowed search). The location offset of each
    (descriptor, windows) pair is computed from the training images ``offset_ids`` (not the
    validation images); with ``config.use_location_offset`` False it is never a candidate. The
    foreground modes (``torch_model.FOREGROUND_MODES`` with a fitted foreground, without "map" when
    ``config.foreground_on_map`` is False; else "off") share two scorings of the queries, with the
    foreground on the map and without it (``selection.foreground_metrics``).

    Returns:
        (the best candidate {"descriptor", "windows", "foreground", "location_offset"}, one row per
        candidate with its metrics and their mean). With no usable validation queries the first
        candidate is kept: the first heads and windows, the first foreground mode (on the map when
        fitted and allowed), no location offset.
    """
    offsets = (False, True) if model.config.use_location_offset else (False,)
    searches = [(name, list(w), lo) for name in heads for w in dict.fromkeys(windows)
                if name == "raw" or w == windows[0] for lo in offsets]
    modes = [m for m in FOREGROUND_MODES if m != "map" or model.config.foreground_on_map] if has_fg else ["off"]
    if queries is None or len(set(queries.labels.tolist())) < 2:
        name, w, lo = searches[0]
        return {"descriptor": name, "windows": w, "foreground": modes[0], "location_offset": lo}, []
    query_feats = _features(model, queries.images, device)  # frozen backbone: once for every candidate
    rows, current, offset = [], (None, None), None
    for name, w, lo in searches:
        if name != current[0]:
            model.set_descriptor_heads(heads[name], heads_widths(heads[name]))
            fill_bank(model, feats)
        model.config.windows = tuple(w)
        if (name, w) != current:
            current, offset = (name, w), None
        model.location_offset.zero_()
        if lo:
            if offset is None:
                offset = location_offset(model, feats, offset_ids)
            model.location_offset.copy_(offset)
        measured = {}
        for mode in ("map", "off") if has_fg else ("off",):
            model.set_foreground_mode(mode)
            measured[mode] = validation_metrics(*validation_outputs(model, query_feats, queries), queries)
        composed = foreground_metrics(measured.get("map"), measured["off"])
        for mode in modes:
            metrics = composed[mode]
            rows.append({"descriptor": name, "windows": w, "foreground": mode, "location_offset": lo, **metrics,
                         "mean": float(np.mean(list(metrics.values())))})
    best = best_candidate(rows)
    return {k: best[k] for k in ("descriptor", "windows", "foreground", "location_offset")}, rows


def heads_widths(heads: torch.nn.ModuleList) -> tuple[int, int]:
    """Output D of each of a pair of descriptor heads."""
    return tuple(head.projection.shape[0] if isinstance(head, RawTapHead) else head.head.out_channels
                 for head in heads)


def raw_heads(config: CPRConfig, channels: tuple[int, int], feats, device: torch.device) -> torch.nn.ModuleList:
    """Raw-tap descriptor heads, projections fitted on the training taps."""
    heads = descriptor_heads(dataclasses.replace(config, descriptor="raw"), channels).to(device)
    for head, f in zip(heads, feats):
        head.fit(f, seed=config.seed)
    return heads


def train_model(images_u8: np.ndarray, config: CPRConfig, backbone: torch.nn.Module, *, is_texture: bool,
                texture_dir: str | None = None, device: str | None = None, run_dir: str | Path | None = None,
                progress: bool = True, defects: tuple[np.ndarray, np.ndarray] | None = None,
                p_real_defect: float = P_REAL_DEFECT, p_paste: float = P_PASTE) -> tuple[CPRModel, TrainReport]:
    """Train CPR on good images, optionally with a few real defects (supervised, method page 7b).

    Args:
        images_u8: (N, S, S, 3) uint8 RGB training images already resized to ``config.image_size``.
        config: hyper-parameters; not modified: the model's own copy records what was chosen
            (``descriptor``, ``windows``).
        backbone: frozen feature extractor.
        is_texture: True forces the foreground branch off (else it is fitted and kept only where it
            helps on the validation split) and sets the GPU schedule to 500 steps.
        texture_dir: optional folder of anomaly textures (e.g. DTD); else the images themselves.
        device: "cpu", "cuda", ... (default: CUDA when available).
        run_dir: where ``train.log`` and ``checkpoints/`` go (optional).
        defects: real defective images (M, S, S, 3) uint8 and their masks (M, S, S) bool, or None.
            They are never part of the retrieval state, the bank or the threshold.
        p_real_defect: probability that a training query is a real defective image (with ``defects``).
        p_paste: probability that 1-5 real defects are pasted onto a query (with ``defects``).
    Returns:
        the trained model (eval mode, on ``device``) and a :class:`TrainReport`.
    """
    start = time.time()
    n = len(images_u8)
    if n < 2:
        raise ValueError(f"train_model: need at least 2 good training images, got {n}")
    if defects is not None:
        check_defects(*defects, config.image_size)
    config = dataclasses.replace(config)
    fine_side = config.image_size // backbone.strides[0]
    if config.grid > fine_side:  # every retrieval block at least one fine patch (as loading checks)
        raise InputError(f"CPRConfig: grid must be at most the fine map side, {fine_side} at image_size "
                         f"{config.image_size} with this backbone; got {config.grid}")
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
    model = CPRModel(dataclasses.replace(config, descriptor="learned"), backbone, n).to(dev).eval()
    model.config = config
    images = torch.from_numpy(channels_first(images_u8))
    feats = _features(model, images, dev)
    for f, stride in zip(feats, backbone.strides):
        if f.shape[-1] != config.image_size // stride:
            raise ValueError(f"train_model: backbone tap at stride {stride} gave {tuple(f.shape)}; expected side "
                             f"{config.image_size // stride} (image_size must be a multiple of {max(backbone.strides)})")
    log.info("retrieval: k-means with %d clusters", config.n_clusters)
    train_index = fit_retrieval(model, feats[0], config.seed)
    windows = [config.windows]
    if config.auto_windows:
        sides = [f.shape[-1] for f in feats]
        near = choose_windows(feats, train_index.cpu().numpy(), config.max_windows, seed=config.seed)
        windows = [near, tuple(2 * side - 1 for side in sides)]  # from the data, and a global search
        config.windows = near  # the local metric is trained for these
        log.info("search windows from the training images: %s; global: %s", *windows)
    has_fg = False if is_texture or not config.use_foreground else fit_foreground_state(model, feats[0], config.seed)
    fg_full = _full_size(model.bank_fg, config.image_size) if has_fg else np.ones(
        (n, config.image_size, config.image_size), np.float32)
    source = AnomalySource(texture_dir=texture_dir, images=None if texture_dir else list(images_u8))
    real = None if defects is None else real_defect_queries(model, *defects, dev, has_fg)
    sampler = QuerySampler(images_u8, fg_full, has_fg, source, train_index.cpu().numpy(), real, p_real_defect, p_paste)
    fit_ids, val_ids = validation_split(n, config.val_fraction, config.seed)
    heads, final_loss, steps_run = {}, None, 0
    descriptors = config.descriptor_candidates(dev.type)
    if "learned" in descriptors:
        steps, seconds = config.training_schedule(is_texture, dev.type)
        final_loss, steps_run = train_local_metric(model, feats, sampler, fit_ids, steps, seconds, run_dir, progress)
        heads["learned"] = model.lrb
    if "raw" in descriptors:
        heads["raw"] = raw_heads(config, backbone.channels, feats, dev)
    queries = validation_queries(sampler, val_ids, config.seed) if len(val_ids) else None
    best, selection = choose_model(model, feats, heads, has_fg, windows, queries,
                                   torch.as_tensor(fit_ids, device=dev), dev)
    for row in selection:
        log.info("validation: descriptor %-7s windows %-8s foreground %-5s location offset %-5s mean %.4f",
                 row["descriptor"], row["windows"], row["foreground"], row["location_offset"], row["mean"])
    descriptor, keep_fg = best["descriptor"], best["foreground"]
    config.descriptor, config.windows = descriptor, tuple(best["windows"])
    if model.lrb is not heads[descriptor] or not selection:  # else bank and memory hold these heads' already
        model.set_descriptor_heads(heads[descriptor], heads_widths(heads[descriptor]))
        fill_bank(model, feats)
    model.set_foreground_mode(keep_fg)
    model.location_offset.zero_()
    if best["location_offset"]:
        model.location_offset.copy_(location_offset(model, feats, torch.arange(n, device=dev)))
    loo, (pixel_median, pixel_max) = leave_one_out_scores(model, feats)
    threshold, threshold_source = good_score_threshold(loo, "leave-one-out scores of the training images",
                                                       score_bound(config.top_t, config.image_size, pixel_max))
    report = TrainReport(is_texture=is_texture, n_train=n, steps=steps_run, final_loss=final_loss,
                         threshold=threshold, threshold_source=threshold_source, loo_scores=[float(s) for s in loo],
                         pixel_normal=(pixel_median, pixel_max), foreground=keep_fg,
                         supervised=None if real is None else {
                             "n_defects": len(real.images), "p_real_defect": sampler.p_real_defect,
                             "p_paste": sampler.p_paste, "real_queries": sampler.real_queries,
                             "pasted_queries": sampler.pasted_queries},
                         descriptor=descriptor, windows=list(config.windows), foreground_fitted=has_fg,
                         location_offset=bool(best["location_offset"]),
                         memory_images=tuple(m.shape[0] for m in model.memories),
                         n_validation=len(val_ids), selection=selection, seconds=time.time() - start)
    return model, report
