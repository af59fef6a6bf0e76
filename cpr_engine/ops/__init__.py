"""The CPR hot path, native (``cpr_engine._C``, C++/OpenMP and CUDA) or PyTorch reference.

One function per operation, same name in every layer (``csrc/ops/<op>.cpp``,
``csrc/{cpu,cuda}/<op>.*``, ``tests/ops/test_<op>.py``):

=====================  =========================================================================
``codebook_histogram``  nearest codebook center per pixel + block histograms (retrieval.py)
``hist_match``          robust block-wise KL of queries vs references (retrieval.py)
``top_k``               k closest references, ties to the lower index (retrieval.py)
``nn_search``           location-restricted NN search, every scale in one call (nn_search.py)
``postprocess``         fuse scales, foreground, upsample, blur, top-T score (scoring.py)
=====================  =========================================================================

Beside them, :func:`score_tail`: the whole scoring tail (``cpr_engine.tail``) composed natively in one
call (``csrc/tail``; CPU, NumPy arrays or CPU tensors).

Inputs may be
* torch CPU tensors: passed to the C++ kernels as zero-copy NumPy views (per-image activations
  such as ``query``/``features``/maps are made contiguous first, a copy only when they are not,
  e.g. channels-last LRB output; banks, references and centers are never copied: a float64 or
  strided bank is rejected);
* torch CUDA tensors: passed as raw device pointers on the current stream to the CUDA kernels when
  ``_C`` was compiled with CUDA, else the reference runs;
* NumPy arrays: native only (this path never imports torch; it is what a torch-free runtime uses).
Outputs have the inputs' kind (tensor on the same device, or ndarray).

Choice of implementation, per call: ``impl="native"`` or ``impl="reference"`` wins; otherwise
native when ``cpr_engine._C`` imports, unless the environment variable ``CPR_ENGINE_OPS=reference``
forces the reference. The kernels are inference-only and opaque to torch: torch inputs that require
grad (with grad enabled) go to the reference, which keeps autograd, and so does everything under
``torch.jit.trace``, ONNX export or ``torch.compile`` (export traces the reference graph). :func:`backend` says what the default is and the
first call logs it once at INFO, e.g. "cpr_engine.ops: using native C++ kernels (CUDA: no)".
Native results equal the reference up to float rounding (tests/ops/ states each tolerance).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

ENV_VAR = "CPR_ENGINE_OPS"
IMPLS = ("native", "reference")

try:  # the compiled kernels; absent in a pure-Python checkout
    from .. import _C  # type: ignore[attr-defined]
    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - depends on the build
    _C = None
    _IMPORT_ERROR = exc

_logged = False

__all__ = ["backend", "native_available", "cuda_available", "native_tail_fast", "native_tail_for", "native_error",
           "codebook_histogram", "hist_match", "top_k", "nn_search", "postprocess", "score_tail"]


# ---------------------------------------------------------------------------------------------
# choice of implementation

def native_available() -> bool:
    """True when ``cpr_engine._C`` imported."""
    return _C is not None


def cuda_available() -> bool:
    """True when ``cpr_engine._C`` contains the CUDA kernels (a GPU may still be absent)."""
    return _C is not None and bool(_C.WITH_CUDA)


def native_tail_fast() -> bool:
    """True when ``cpr_engine._C``'s scoring tail (:func:`score_tail`) runs whole-map searches as BLAS
    matrix products (built with a CBLAS); without one they run in the search kernel, several times
    slower than NumPy's products, and ``tail.score`` runs the stages on NumPy instead."""
    return _C is not None and bool(_C.TAIL_WITH_BLAS)


def native_error() -> str | None:
    """Why ``cpr_engine._C`` did not import (None when it did)."""
    return None if _IMPORT_ERROR is None else f"{type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}"


def _env_choice() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value not in IMPLS:
        raise ValueError(f"cpr_engine.ops: {ENV_VAR} must be 'native', 'reference' or 'auto'; got {value!r}")
    return value


def backend() -> str:
    """Default implementation of the ops now: ``"native"`` or ``"reference"``; logs it once."""
    global _logged
    env = _env_choice()
    if env == "reference":
        choice, why = "reference", f"forced by {ENV_VAR}=reference"
    elif _C is None:
        if env == "native":
            raise RuntimeError(f"cpr_engine.ops: {ENV_VAR}=native but cpr_engine._C is not built "
                               f"({native_error()})")
        choice, why = "reference", f"cpr_engine._C not built: {native_error()}"
    else:
        choice, why = "native", ""
    if not _logged:
        _logged = True
        if choice == "native":
            log.info("cpr_engine.ops: using native C++ kernels (CUDA: %s)", "yes" if cuda_available() else "no")
            log.debug("cpr_engine.ops: CPU kernels use %s", _C.cpu_isa())
        else:
            log.info("cpr_engine.ops: using the PyTorch reference (%s)", why)
    return choice


def _torch():
    import torch  # lazy: the NumPy path never imports torch

    return torch


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _tracing() -> bool:
    """True inside torch.jit tracing, ONNX export or torch.compile: only the reference is traceable."""
    torch = _torch()
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiling())


def _kind(op: str, arrays: Sequence[Any]) -> str:
    """'numpy', 'cpu' (torch) or 'cuda' (torch) for the non-None inputs; mixing is an error."""
    kinds = set()
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            kinds.add("numpy")
        elif _is_tensor(a):
            kinds.add("cuda" if a.is_cuda else ("cpu" if a.device.type == "cpu" else a.device.type))
        else:
            raise TypeError(f"{op}: inputs must be numpy.ndarray or torch.Tensor; got {type(a).__name__}")
    if len(kinds) > 1:
        raise TypeError(f"{op}: inputs must all be NumPy arrays, CPU tensors or CUDA tensors; got {sorted(kinds)}")
    return kinds.pop() if kinds else "numpy"


def _choose(op: str, impl: str | None, kind: str, arrays: Sequence[Any]) -> str:
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"{op}: impl must be 'native', 'reference' or None; got {impl!r}")
    needs_grad = kind != "numpy" and _torch().is_grad_enabled() and any(
        a is not None and a.requires_grad for a in arrays)
    if kind != "numpy" and _tracing():
        if impl == "native":
            raise ValueError(f"{op}: impl='native' cannot be traced or exported (the kernels are opaque to "
                             "torch); use impl=None or 'reference'")
        return "reference"
    if impl == "native":
        if _C is None:
            raise RuntimeError(f"{op}: impl='native' but cpr_engine._C is not built ({native_error()})")
        if kind == "cuda" and not cuda_available():
            raise RuntimeError(f"{op}: impl='native' with CUDA tensors, but cpr_engine._C was built without CUDA")
        if kind not in ("numpy", "cpu", "cuda"):
            raise RuntimeError(f"{op}: impl='native' takes NumPy arrays, CPU or CUDA tensors; got {kind}")
        if needs_grad:
            raise ValueError(f"{op}: the native kernels are inference-only; inputs require grad "
                             "(use torch.no_grad() or impl='reference')")
        return "native"
    if impl == "reference":
        return "reference"
    if kind == "numpy":
        if _C is None:
            raise RuntimeError(f"{op}: NumPy inputs need the native kernels, but cpr_engine._C is not built "
                               f"({native_error()})")
        return "native" if _env_choice() != "reference" else "reference"
    choice = backend()
    if choice == "native" and (needs_grad or kind not in ("cpu", "cuda") or (kind == "cuda" and not cuda_available())):
        return "reference"
    return choice


# ---------------------------------------------------------------------------------------------
# conversions

_NUMPY_DTYPES = ("float32", "float16", "int64")


def _np(t, op: str, name: str, contiguous: bool = False) -> np.ndarray:
    """CPU tensor -> NumPy view (zero copy). ``contiguous``: copy first when it is strided."""
    t = t.detach()
    if contiguous:
        t = t.contiguous()
    dtype = str(t.dtype).replace("torch.", "")
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"{op}: {name} must be float32|float16|int64 as the op requires; got "
                         f"{tuple(t.shape)} {dtype}")
    return t.numpy()


def _dev(t, op: str, name: str) -> tuple:
    """CUDA tensor -> (data_ptr, shape, dtype, contiguous) for ``_C.cuda``."""
    return (t.data_ptr(), tuple(t.shape), str(t.dtype).replace("torch.", ""), t.is_contiguous())


def _same_device(op: str, tensors) -> Any:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{op}: all tensors must be on one device; got {sorted(map(str, devices))}")
    return devices.pop()


def _stream(device) -> int:
    return _torch().cuda.current_stream(device).cuda_stream


def _to_torch(arrays):
    torch = _torch()
    return [None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


# ---------------------------------------------------------------------------------------------
# operations

def codebook_histogram(features, centers, grid: int, impl: str | None = None):
    """Nearest codebook center of every feature vector and block histograms of the ids.

    Args:
        features: (B, C, H, W) float32 feature maps.
        centers: (M, C) float32 codebook centers.
        grid: blocks per side S.
        impl: "native" | "reference" | None (default choice, see module docstring).
    Returns:
        ids (B, H, W) int64 in [0, M) (squared L2, ties to the lowest id), and
        hists (B, S*S, M+1) float32 normalized block histograms (padding in bin 0).
    Note:
        Ids can differ from the reference where two centers are tied up to float rounding.
    """
    op = "codebook_histogram"
    kind = _kind(op, [features, centers])
    if _choose(op, impl, kind, [features, centers]) == "reference":
        from ..reference import codebook_histogram as reference

        f, c = _to_torch([features, centers]) if kind == "numpy" else (features, centers)
        ids, hists = reference(f, c, grid)
        return (ids.numpy(), hists.numpy()) if kind == "numpy" else (ids, hists)
    if kind == "numpy":
        return _C.codebook_histogram(features, centers, grid)
    torch = _torch()
    if kind == "cpu":
        ids, hists = _C.codebook_histogram(_np(features, op, "features", True), _np(centers, op, "centers"), grid)
        return torch.from_numpy(ids), torch.from_numpy(hists)
    device = _same_device(op, [features, centers])
    features = features.detach().contiguous()
    b, _, h, w = features.shape if features.dim() == 4 else (0, 0, 0, 0)
    m = centers.shape[0] if centers.dim() >= 1 else 0
    ids = torch.empty(b, h, w, dtype=torch.int64, device=device)
    hists = torch.empty(b, max(grid, 0) ** 2, m + 1, dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _C.cuda.codebook_histogram(_dev(features, op, "features"), _dev(centers, op, "centers"), grid,
                                   _dev(ids, op, "ids"), _dev(hists, op, "hists"), _stream(device))
    return ids, hists


def hist_match(query, refs, kept_blocks: int, impl: str | None = None):
    """Robust block-wise KL distance of each query to each reference.

    Args:
        query: (B, S*S, M+1) float32 block histograms.
        refs: (N, S*S, M+1) float32 block histograms.
        kept_blocks: the number of smallest per-block KL values summed, 1 <= kept_blocks <= S*S.
        impl: "native" | "reference" | None.
    Returns:
        (B, N) float32 distances.
    """
    op = "hist_match"
    kind = _kind(op, [query, refs])
    if _choose(op, impl, kind, [query, refs]) == "reference":
        from ..reference import hist_match as reference

        if kind == "numpy":
            return reference(*_to_torch([query, refs]), kept_blocks).numpy()
        return reference(query, refs, kept_blocks)
    if kind == "numpy":
        return _C.hist_match(query, refs, kept_blocks)
    torch = _torch()
    if kind == "cpu":
        return torch.from_numpy(_C.hist_match(_np(query, op, "query", True), _np(refs, op, "refs"), kept_blocks))
    device = _same_device(op, [query, refs])
    query = query.detach().contiguous()
    out = torch.empty(query.shape[0] if query.dim() else 0, refs.shape[0] if refs.dim() else 0,
                      dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _C.cuda.hist_match(_dev(query, op, "query"), _dev(refs, op, "refs"), kept_blocks,
                           _dev(out, op, "distances"), _stream(device))
    return out


def top_k(distances, k: int, exclude=None, impl: str | None = None):
    """Indices of the k smallest distances per row, closest first; ties go to the lower index.

    Args:
        distances: (B, N) float32.
        k: wanted references, clipped to N (N - 1 with ``exclude``).
        exclude: optional (B,) int64 index per row never returned (leave-one-out).
        impl: "native" | "reference" | None.
    Returns:
        (B, min(k, N')) int64.
    Note:
        NaN sorts after +inf. With ``exclude`` the excluded index is skipped outright, where the
        reference gives it +inf (they differ only when other distances are +inf or NaN).
    """
    op = "top_k"
    kind = _kind(op, [distances, exclude])
    if _choose(op, impl, kind, [distances, exclude]) == "reference":
        from ..reference import top_k as reference

        if kind == "numpy":
            d, ex = _to_torch([distances, exclude])
            return reference(d, k, ex).numpy()
        return reference(distances, k, exclude)
    if kind == "numpy":
        return _C.top_k(distances, k, exclude)
    torch = _torch()
    if kind == "cpu":
        ex = None if exclude is None else _np(exclude, op, "exclude", True)
        return torch.from_numpy(_C.top_k(_np(distances, op, "distances", True), k, ex))
    device = _same_device(op, [distances, exclude])
    distances = distances.detach().contiguous()
    b, n = distances.shape if distances.dim() == 2 else (0, 0)
    out = torch.empty(b, max(0, min(k, n - (exclude is not None))), dtype=torch.int64, device=device)
    with torch.cuda.device(device):
        _C.cuda.top_k(_dev(distances, op, "distances"), k,
                      None if exclude is None else _dev(exclude.contiguous(), op, "exclude"),
                      _dev(out, op, "indices"), _stream(device))
    return out


def nn_search(query, bank, index, window, impl: str | None = None, check_index: bool = True):
    """Minimum cosine distance of each query descriptor to the retrieved references near it.

    Every scale in one call: pass lists (finest first) for ``query``, ``bank`` and ``window``.

    Args:
        query: (B, D, H, W) float32 L2-normalized descriptors, or a list of them (one per scale).
        bank: (N, D, H, W) float32 or float16 training descriptors (read in place at the indexed
            rows, never gathered), or a list.
        index: (B, K) int64 rows of each bank retrieved per query, 0 <= index < N; K > N repeats.
        window: odd window side r (an int, or a list of ints). On the CPU a window that covers the map
            (``r // 2 >= max(H, W) - 1``) runs as matrix products when the native build has its BLAS.
        impl: "native" | "reference" | None.
        check_index: True: out-of-range index values raise IndexError. For CUDA tensors on the native
            kernels that check copies the index to the host and synchronises; False skips it (CUDA graph
            capture, with an index from ``top_k``), and an image with an out-of-range index gets NaN.
            Other paths always check.
    Returns:
        (B, H, W) float32 ``1 - max cosine`` (or a list, one per scale). Positions outside the map
        never win.
    """
    op = "nn_search"
    multi = isinstance(query, (list, tuple))
    queries = list(query) if multi else [query]
    banks = list(bank) if isinstance(bank, (list, tuple)) else [bank]
    windows = list(window) if isinstance(window, (list, tuple)) else [window]
    if not (len(queries) == len(banks) == len(windows)) or not queries:
        raise ValueError(f"{op}: query, bank and window must give the same number (>= 1) of scales; "
                         f"got {len(queries)}, {len(banks)}, {len(windows)}")
    kind = _kind(op, [*queries, *banks, index])
    if _choose(op, impl, kind, [*queries, *banks, index]) == "reference":
        from ..reference import nn_search as reference

        if kind == "numpy":
            ix = _to_torch([index])[0]
            outs = [reference(q, b, ix, int(r)).numpy() for q, b, r in
                    zip(_to_torch(queries), _to_torch(banks), windows)]
        else:
            outs = [reference(q, b, index, int(r)) for q, b, r in zip(queries, banks, windows)]
    elif kind == "numpy":
        outs = _C.nn_search(list(zip(queries, banks, (int(r) for r in windows))), index)
    elif kind == "cpu":
        torch = _torch()
        scales = [(_np(q, op, "query", True), _np(b, op, "bank"), int(r)) for q, b, r in zip(queries, banks, windows)]
        outs = [torch.from_numpy(o) for o in _C.nn_search(scales, _np(index, op, "index", True))]
    else:
        torch = _torch()
        device = _same_device(op, [*queries, *banks, index])
        queries = [q.detach().contiguous() for q in queries]
        index = index.detach().contiguous()
        outs, scales = [], []
        for q, b, r in zip(queries, banks, windows):
            shape = (q.shape[0], q.shape[2], q.shape[3]) if q.dim() == 4 else (0, 0, 0)
            out = torch.empty(shape, dtype=torch.float32, device=device)
            outs.append(out)
            scales.append((_dev(q, op, "query"), _dev(b, op, "bank"), int(r), _dev(out, op, "out")))
        with torch.cuda.device(device):
            _C.cuda.nn_search(scales, _dev(index, op, "index"), _stream(device), check_index)
    return list(outs) if multi else outs[0]


def postprocess(local_maps, foreground, image_size: int, sigma: float, top_t: int, impl: str | None = None):
    """Patch scores of all scales -> (anomaly map, image score), fused.

    Args:
        local_maps: list of per-scale (B, h_s, w_s) float32 patch scores, finest first.
        foreground: (B, h_0, w_0) float32 in [0, 1] multiplied into the fused map, or None.
        image_size: side S of the output map.
        sigma: Gaussian blur sigma in output pixels (<= 0: no blur); radius ceil(4 sigma), reflect
            padding (replicate when S <= radius).
        top_t: pixels summed for the image score (clipped to S*S).
        impl: "native" | "reference" | None.
    Returns:
        anomaly_map (B, S, S) float32, pred_score (B,) float32.
    """
    op = "postprocess"
    maps = list(local_maps)
    kind = _kind(op, [*maps, foreground])
    if _choose(op, impl, kind, [*maps, foreground]) == "reference":
        from ..reference import postprocess as reference

        if kind == "numpy":
            converted = _to_torch([*maps, foreground])
            amap, score = reference(converted[:-1], converted[-1], image_size, sigma, top_t)
            return amap.numpy(), score.numpy()
        return reference(maps, foreground, image_size, sigma, top_t)
    if kind == "numpy":
        return _C.postprocess(maps, foreground, image_size, float(sigma), top_t)
    torch = _torch()
    if kind == "cpu":
        fg = None if foreground is None else _np(foreground, op, "foreground", True)
        amap, score = _C.postprocess([_np(m, op, "maps", True) for m in maps], fg, image_size, float(sigma), top_t)
        return torch.from_numpy(amap), torch.from_numpy(score)
    device = _same_device(op, [*maps, foreground])
    maps = [m.detach().contiguous() for m in maps]
    fg = None if foreground is None else foreground.detach().contiguous()
    b = maps[0].shape[0] if maps and maps[0].dim() else 0
    amap = torch.empty(b, image_size, image_size, dtype=torch.float32, device=device)
    score = torch.empty(b, dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _C.cuda.postprocess([_dev(m, op, "maps") for m in maps], None if fg is None else _dev(fg, op, "foreground"),
                            image_size, float(sigma), top_t, _dev(amap, op, "anomaly_map"), _dev(score, op, "score"),
                            _stream(device))
    return amap, score


def native_tail_for(impl: str | None, arrays: Sequence[Any], leave_one_out: bool = False) -> bool:
    """Whether ``tail.score`` runs these inputs (its per-image arrays) through :func:`score_tail`: inputs
    that the ops would send to the native kernels (not forced to the reference, no grad, not traced):
    NumPy arrays or CPU tensors with a native tail built with its BLAS (:func:`native_tail_fast`), or CUDA
    tensors with the CUDA kernels built (``leave_one_out`` scoring runs on the CPU only)."""
    kind = _kind("score_tail", arrays)
    if kind == "cuda":
        usable = cuda_available() and not leave_one_out
    else:
        usable = kind in ("numpy", "cpu") and native_tail_fast()
    return usable and _choose("score_tail", impl, kind, arrays) == "native"


def score_tail(descriptors: Sequence[Any], features, foreground, state, settings, exclude=None):
    """The whole scoring tail in one native call (``csrc/tail``, ``<cpr/tail.h>``): the stages
    ``cpr_engine.tail.score`` composes from the ops above, as ``cpr::Detector`` runs them.

    Args:
        descriptors: per scale (B, D_s, h_s, h_s) float32 unit-norm descriptors, finest first (2 scales).
        features: (B, C, h_0, h_0) float32 fine taps; foreground: (B, h_0, h_0) float32 or None.
        state: the training state, a ``cpr_engine.tail.TailState``: centers (n_codes, C), train_hists
            (N, grid^2, n_codes + 1), banks [(N, D_s, h_s, h_s)] and memories [(M_s, D_s, h_s, h_s)] (each
            float32 or float16; every memory map is searched), bank_fg (N, h_0, h_0) float32 (read only with a
            foreground), location_offset (h_0, h_0) float32, memory_sources (read only with ``exclude``).
        settings: grid, kept_blocks, top_k, windows, image_size, blur_sigma, top_t, foreground_on_map
            (a ``CPRConfig`` or ``contract.RuntimeSettings``).
        exclude: optional (B,) int64 training image each query must not match (leave-one-out scoring:
            never retrieved, and its memory locations count as zeroed, as ``tail.local_search`` does);
            needs ``state.memory_sources``, per scale (M_s, h_s, h_s) int64 source image of each memory
            location, and a build with its BLAS (:func:`native_tail_fast`). CPU only.
        The arrays are NumPy arrays or CPU tensors (zero-copy views; per-image arrays made contiguous),
        or CUDA tensors on one device (the state C-contiguous; the call enqueues on the current stream
        with no host synchronisation: capturable in a CUDA graph).
    Returns:
        anomaly maps (B, S, S) float32, image scores (B,) float32, of the inputs' kind (and device).
    """
    op = "score_tail"
    if _C is None:
        raise RuntimeError(f"{op}: needs the compiled kernels cpr_engine._C ({native_error()})")
    backend()
    kind = _kind(op, [features, *descriptors, foreground])
    if kind == "cuda":
        return _score_tail_cuda(descriptors, features, foreground, state, settings, exclude)
    if kind != "cpu":
        return _C.score_tail(list(descriptors), features, foreground, state, settings, exclude)
    torch = _torch()
    maps, scores = _C.score_tail([_np(d, op, "descriptors", True) for d in descriptors],
                                 _np(features, op, "features", True),
                                 None if foreground is None else _np(foreground, op, "foreground", True),
                                 _state_arrays(state, lambda t, name: _np(t, op, name)), settings,
                                 None if exclude is None else _np(exclude, op, "exclude", True))
    return torch.from_numpy(maps), torch.from_numpy(scores)


def _state_arrays(state, convert):
    """The tail state (a NamedTuple of arrays and lists of arrays) with ``convert(array, field name)`` applied
    to every array."""
    return state._replace(**{name: None if value is None else [convert(v, name) for v in value]
                             if isinstance(value, (list, tuple)) else convert(value, name)
                             for name, value in state._asdict().items()})


def _score_tail_cuda(descriptors, features, foreground, state, settings, exclude):
    """:func:`score_tail` on CUDA tensors: outputs allocated on their device, the call on its current stream."""
    op = "score_tail"
    if exclude is not None:
        raise ValueError(f"{op}: exclude (leave-one-out scoring) runs on the CPU only; got CUDA tensors")
    if not cuda_available():
        raise RuntimeError(f"{op}: CUDA tensors, but cpr_engine._C was built without CUDA")
    torch = _torch()
    arrays = [a for value in state if value is not None for a in (value if isinstance(value, (list, tuple)) else [value])]
    device = _same_device(op, [features, *descriptors, foreground, *arrays])
    descriptors = [d.detach().contiguous() for d in descriptors]
    features = features.detach().contiguous()
    foreground = None if foreground is None else foreground.detach().contiguous()
    batch, size = (features.shape[0] if features.dim() else 0), int(settings.image_size)
    maps = torch.empty(batch, size, size, dtype=torch.float32, device=device)
    scores = torch.empty(batch, dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _C.cuda.score_tail([_dev(d, op, "descriptors") for d in descriptors], _dev(features, op, "features"),
                           None if foreground is None else _dev(foreground, op, "foreground"),
                           _state_arrays(state, lambda t, name: _dev(t.detach(), op, name)), settings,
                           _dev(maps, op, "anomaly_map"), _dev(scores, op, "score"), _stream(device))
    return maps, scores
