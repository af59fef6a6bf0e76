"""Keep freed per-image buffers in the process heap (glibc), so inference does not page-fault them anew.

glibc's malloc serves every block above its mmap threshold (128 KiB at start, raised only after a
large mapped block happens to be freed) with a fresh ``mmap`` and returns it to the kernel on
``free``. A batch-1 forward pass allocates and frees activations of a few MiB each, so every image
paid page faults for them: the default backbone's forward took 24-30 ms instead of 17-18 ms on the
2-core VM (benchmarks/RESULTS.md, "The allocator"). :func:`keep_freed_buffers` raises the mmap
threshold to 32 MiB (glibc's largest) and the trim threshold to 64 MiB, once per process, when a
detector is made (``Detector``, ``ArtifactDetector``): freed blocks then stay in the heap for the
next image. The cost is memory the process keeps instead of returning (at most the trim threshold
above what it uses).

Process-wide, like any allocator setting. ``CPR_ENGINE_MALLOC=system`` leaves glibc's defaults alone
(e.g. when the host application tunes malloc itself or preloads jemalloc / tcmalloc); on other C
libraries and platforms nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV_VAR = "CPR_ENGINE_MALLOC"
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (<malloc.h>)

_state: bool | None = None  # None: not tried yet; else what the first call returned


def keep_freed_buffers() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring) once per process.

    Returns True when they are set (now or by an earlier call), False when left alone
    (``CPR_ENGINE_MALLOC=system``, not glibc, or mallopt refused). Raises ValueError for any other
    value of ``CPR_ENGINE_MALLOC`` than "auto", "system" or empty.
    """
    global _state
    if _state is None:
        _state = _set_thresholds()
    return _state


def _set_thresholds() -> bool:
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice == "system":
        log.debug("allocator: %s=system, glibc's defaults kept", ENV_VAR)
        return False
    if choice not in ("", "auto"):
        raise ValueError(f"cpr_engine.allocator: {ENV_VAR} must be 'auto' or 'system'; got {choice!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("allocator: glibc mmap threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD,
              "set" if ok else "refused")
    return ok
