"""The TensorRT option of the C++ runtime where TensorRT is absent: CMake and the example say so.

The TensorRT backend itself (csrc/runtime/network_tensorrt.cpp) needs TensorRT and a GPU; see
csrc/README.md for how it was checked.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "build" / "cpp" / "inspect_folder"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_tensorrt_on_without_tensorrt_fails_naming_it(tmp_path):
    env = {**os.environ, "TENSORRT_ROOT": str(tmp_path / "no-tensorrt")}
    result = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DCPR_BUILD_PYTHON=OFF", "-DCPR_BUILD_RUNTIME=ON",
         "-DCPR_WITH_CUDA=OFF", "-DCPR_WITH_TENSORRT=ON"], capture_output=True, text=True, env=env, timeout=120)
    if "C++ runtime + example: ON" not in result.stdout:
        pytest.skip(f"the C++ runtime's dependencies are missing: {result.stderr[-500:]}")
    if result.returncode == 0:
        pytest.skip("TensorRT is installed here")
    assert "CPR_WITH_TENSORRT=ON but not found" in result.stderr
    assert "NvInfer.h" in " ".join(result.stderr.split())  # CMake wraps long messages


@pytest.mark.skipif(not BINARY.is_file(), reason=f"{BINARY} not built (bash scripts/build_cpp.sh)")
def test_example_backend_flag(tmp_path):
    def run(*args):
        return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=60)

    bad = run("--backend", "cuda", str(tmp_path), str(tmp_path), str(tmp_path / "out"))
    assert bad.returncode == 2 and "--backend auto|opencv|tensorrt" in bad.stderr
    forced = run("--backend", "tensorrt", str(tmp_path), str(tmp_path), str(tmp_path / "out"))
    assert forced.returncode == 2 and not forced.stdout
    if "no manifest.json" in forced.stderr:
        pytest.skip("inspect_folder is built with TensorRT")
    assert "TensorRT backend: this cpr-engine build has no TensorRT" in forced.stderr
