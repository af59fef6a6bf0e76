"""Write a Triton model repository from artifact folders."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..serve.spec import INPUTS, OUTPUTS, TRITON_DTYPES, model_name
from ..runtime.artifact import read_manifest

MODEL_PY = '''"""Triton Python backend entry point of a cpr-engine model (needs cpr_engine importable by the server)."""
from cpr_engine.triton_repo.python_model import TritonPythonModel  # noqa: F401
'''


def _tensor(spec, optional: bool) -> str:
    dtype = "STRING" if TRITON_DTYPES[spec.dtype] == "BYTES" else TRITON_DTYPES[spec.dtype]
    extra = "\n    optional: true" if optional else ""
    return f'  {{\n    name: "{spec.name}"\n    data_type: TYPE_{dtype}\n    dims: {list(spec.dims)}{extra}\n  }}'


def render_config(name: str, max_batch_size: int = 8, max_queue_delay_us: int = 2000, instances: int = 1,
                  map_downscale: int = 1) -> str:
    """config.pbtxt text of one model (Python backend, CPU instances)."""
    inputs = ",\n".join(_tensor(t, optional=True) for t in INPUTS)
    outputs = ",\n".join(_tensor(t, optional=False) for t in OUTPUTS)
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
            f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f'parameters {{\n  key: "map_downscale"\n  value: {{ string_value: "{map_downscale}" }}\n}}\n')


def write_repository(artifacts: list[str | Path], repo: str | Path, force: bool = False, **config) -> list[Path]:
    """Write a model repository, or add versions to it; returns the version folders written.

    Args:
        artifacts: artifact folders (checked: manifest and checksums); each becomes the next version
            of the model named by its category.
        repo: repository folder. A model already there keeps its versions and config.pbtxt unless
            ``force`` (then it is rewritten from these artifacts only).
        config: ``max_batch_size``, ``max_queue_delay_us``, ``instances``, ``map_downscale`` of :func:`render_config`.
    """
    repo = Path(repo)
    written, replaced = [], set()
    for folder in artifacts:
        name = model_name(read_manifest(Path(folder)))
        model_dir = repo / name
        if force and name not in replaced and model_dir.exists():
            shutil.rmtree(model_dir)
        replaced.add(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        if not (model_dir / "config.pbtxt").exists():
            (model_dir / "config.pbtxt").write_text(render_config(name, **config))
        version = 1 + max((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), default=0)
        version_dir = model_dir / str(version)
        shutil.copytree(folder, version_dir / "artifact")
        (version_dir / "model.py").write_text(MODEL_PY)
        written.append(version_dir)
    return written
