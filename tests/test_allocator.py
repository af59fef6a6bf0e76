"""cpr_engine.allocator: glibc's mmap threshold raised once per process, so per-image buffers stay in the heap.

Each case runs in a fresh interpreter: the setting is process-wide and set at most once.
"""
import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")

# Bytes of a 4 MiB allocation that malloc served by mmap (mallinfo2's hblkhd grows by them while it lives).
PROBE = """
import ctypes, ctypes.util, numpy as np
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
def mapped_bytes_of_a_4mib_buffer():
    before = libc.mallinfo2().hblkhd
    buffer = np.empty(4 << 20, np.uint8)
    return libc.mallinfo2().hblkhd - before
"""


def _run(code: str, env_value: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CPR_ENGINE_MALLOC"}
    if env_value is not None:
        env["CPR_ENGINE_MALLOC"] = env_value
    done = subprocess.run([sys.executable, "-c", PROBE + textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _has_mallinfo2() -> bool:
    return hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 (mallinfo2)")
def test_freed_buffers_stay_in_the_heap_after_the_first_call():
    out = _run("""
        from cpr_engine import allocator
        print(mapped_bytes_of_a_4mib_buffer(), allocator.keep_freed_buffers(), allocator.keep_freed_buffers(),
              mapped_bytes_of_a_4mib_buffer())
    """)
    assert int(out[0]) >= 4 << 20  # glibc's default: a 4 MiB block is its own mapping
    assert out[1:3] == ["True", "True"]
    assert int(out[3]) == 0  # now served from the heap


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 (mallinfo2)")
def test_system_leaves_glibc_alone():
    out = _run("""
        from cpr_engine import allocator
        print(allocator.keep_freed_buffers(), mapped_bytes_of_a_4mib_buffer())
    """, "system")
    assert out[0] == "False" and int(out[1]) >= 4 << 20


def test_every_detector_sets_it():
    out = _run("""
        from cpr_engine import Detector, allocator
        before = allocator._state
        Detector("faster", pretrained=False)
        print(before, allocator._state)
    """)
    assert out == ["None", "True"]


def test_an_unknown_choice_is_named():
    env = {**os.environ, "CPR_ENGINE_MALLOC": "jemalloc"}
    done = subprocess.run([sys.executable, "-c", "from cpr_engine import Detector; Detector('faster', pretrained=False)"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "CPR_ENGINE_MALLOC must be 'auto' or 'system'; got 'jemalloc'" in done.stderr.strip().splitlines()[-1]


def test_cli_names_an_unknown_choice_in_one_line(tiny_detector, demo_root, tmp_path):
    model = tiny_detector.save(tmp_path / "model.pt")
    env = {**os.environ, "CPR_ENGINE_MALLOC": "tcmalloc"}
    done = subprocess.run([sys.executable, "-m", "cpr_engine.cli.predict", "--model", str(model),
                           f"{demo_root}/grass/test/good/000.png", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cpr-predict: error: cpr_engine.allocator: CPR_ENGINE_MALLOC must be 'auto' or 'system'; got 'tcmalloc'"]
    assert not (tmp_path / "out").exists()
