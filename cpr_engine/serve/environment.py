"""The environment Triton's Python backend needs: this interpreter's libpython, NumPy 1.x.

The stub (``triton_python_backend_stub``) links ``libpython3.X.so.1.0`` dynamically and finds the
system one first. With an interpreter built elsewhere (pyenv, conda, a custom prefix) the stub then
runs a different patch release of Python against this environment's standard library, and model
load fails inside ``multiprocessing`` with an ``AttributeError``. Putting this interpreter's own
library folder first on ``LD_LIBRARY_PATH`` fixes it.

The stub's NumPy bridge (pybind11, built against NumPy 1.x) passes tensors as zeros under NumPy 2,
so a server with NumPy 2 would answer with wrong numbers: :func:`check_numpy` refuses to start.
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import numpy as np


def python_library_dir() -> Path | None:
    """Folder holding this interpreter's shared ``libpython`` (None for a static build)."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file() and ".so" in soname:
        return Path(libdir)
    return None


def with_own_libpython(env: dict) -> dict:
    """``env`` with this interpreter's libpython folder first on ``LD_LIBRARY_PATH`` (modified in place).

    Raises:
        RuntimeError when this Python has no shared libpython (the stub cannot use it).
    """
    libdir = python_library_dir()
    if libdir is None:
        raise RuntimeError(
            f"this Python ({sysconfig.get_config_var('prefix')}) has no shared libpython, which Triton's Python "
            f"backend needs; use an interpreter built with --enable-shared (pyenv: "
            f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install ...)")
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != str(libdir)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *parts])
    return env


def check_numpy() -> None:
    """Raise RuntimeError under NumPy >= 2 (Triton's Python backend stub corrupts tensors with it)."""
    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"serving needs NumPy 1.x (found {np.__version__}): the Python backend of the Triton "
                           f"server shipped with nvidia-pytriton passes NumPy 2 tensors as zeros; "
                           f"pip install 'numpy<2' (pip install cpr-engine[serve] does)")
