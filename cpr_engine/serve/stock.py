"""Run the ``tritonserver`` binary shipped in the nvidia-pytriton wheel on a plain model repository.

The wheel keeps the Python backend stub apart (one per Python version); :func:`prepare_backends`
assembles a backend folder with the stub of this interpreter, as a Triton container has it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .environment import check_numpy, with_own_libpython


def _wheel_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_backends(dest: str | Path) -> Path:
    """Copy the wheel's backends into ``dest`` with this Python's stub; returns the backend folder."""
    root, version = _wheel_root(), f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    backends = Path(dest) / "backends"
    shutil.copytree(root / "backends", backends, dirs_exist_ok=True)
    shutil.copy2(stub, backends / "python" / stub.name)
    return backends


def server_env() -> dict:
    """Environment for the server: the wheel's libraries, this Python's libpython and ``bin`` first."""
    from pytriton.utils.distribution import get_libs_path

    check_numpy()
    env = with_own_libpython(dict(os.environ))
    env["LD_LIBRARY_PATH"] += os.pathsep + str(get_libs_path())
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def start_server(repo: str | Path, backends: str | Path, http_port: int, grpc_port: int, metrics_port: int,
                 host: str = "127.0.0.1", log=subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``tritonserver --model-repository repo`` (returns at once; poll readiness over HTTP)."""
    command = [str(_wheel_root() / "bin" / "tritonserver"), f"--model-repository={repo}",
               f"--backend-directory={backends}", f"--http-address={host}", f"--http-port={http_port}",
               f"--grpc-address={host}", f"--grpc-port={grpc_port}", f"--metrics-address={host}",
               f"--metrics-port={metrics_port}", "--exit-timeout-secs=5"]
    return subprocess.Popen(command, env=server_env(), stdout=log, stderr=subprocess.STDOUT)


def free_loopback_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 at the time of the call."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
