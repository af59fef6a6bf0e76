"""Write a Triton model repository from artifact folders."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import OutputError, first_few
from ..serve.spec import INPUTS, OUTPUTS, TRITON_DTYPES, model_name
from ..contract import MANIFEST
from ..runtime.artifact import read_manifest, unlisted_entries

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


def _own_version(entry: Path) -> bool:
    """Whether ``entry`` is a version folder as :func:`write_repository` writes it: ``<n>/`` holding
    this writer's ``model.py`` and ``artifact/`` (nothing but the files its manifest.json lists, or
    empty), nothing else."""
    if not (entry.name.isdigit() and entry.is_dir() and not entry.is_symlink()):
        return False
    if sorted(p.name for p in entry.iterdir()) != ["artifact", "model.py"]:
        return False
    model_py, artifact = entry / "model.py", entry / "artifact"
    if model_py.is_symlink() or not model_py.is_file() or model_py.stat().st_size != len(MODEL_PY.encode()) \
            or model_py.read_bytes() != MODEL_PY.encode() or artifact.is_symlink() or not artifact.is_dir():
        return False
    try:
        manifest = json.loads((artifact / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError):  # none yet: a copy cut short before it
        return not any(artifact.iterdir())
    return isinstance(manifest, dict) and not unlisted_entries(artifact, manifest)


def check_repository(repo: str | Path, names: list[str], force: bool = False) -> None:
    """Refuse a repository write that would replace something of the user's (called before any file is written).

    Args:
        repo: the repository folder: it may not exist yet, else it must be a folder.
        names: the model folders to be written, ``repo/<name>``: each may not exist yet, or must be
            a folder (not a link). Without ``force`` a version is added and nothing is replaced. With
            ``force`` the folder is replaced, so it must be empty or one this writer made:
            ``config.pbtxt`` and at least one version folder ``<n>/`` with this writer's
            ``model.py`` (its text is the marker) and ``artifact/`` holding only the files its
            manifest lists, nothing else.
    Raises:
        OutputError naming the path and what it holds.
    """
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise OutputError(f"Triton repository {repo} is an existing file, not a folder")
    for name in names:
        model_dir = repo / name
        if model_dir.is_symlink() or (model_dir.exists() and not model_dir.is_dir()):
            raise OutputError(f"{model_dir} is not a Triton model folder; refusing to replace it")
        if not force or not model_dir.exists():
            continue
        entries = sorted(model_dir.iterdir())
        versions = [e for e in entries if _own_version(e)]
        stray = [e.name for e in entries if e not in versions and
                 not (e.name == "config.pbtxt" and e.is_file() and not e.is_symlink())]
        if entries and (stray or not versions):
            holds = first_few(stray) if stray else "no version folder written by cpr-export"
            raise OutputError(f"{model_dir} is not a Triton model folder of cpr-export (it holds {holds}); "
                              f"refusing to replace it")


def write_repository(artifacts: list[str | Path], repo: str | Path, force: bool = False, **config) -> list[Path]:
    """Write a model repository, or add versions to it; returns the version folders written.

    Args:
        artifacts: artifact folders (checked: manifest and checksums); each becomes the next version
            of the model named by its category.
        repo: repository folder. A model already there keeps its versions and config.pbtxt unless
            ``force`` (then it is rewritten from these artifacts only; only a model folder this
            writer made, or an empty one, is replaced: see :func:`check_repository`).
        config: ``max_batch_size``, ``max_queue_delay_us``, ``instances``, ``map_downscale`` of :func:`render_config`.
    Raises:
        OutputError (before any file is written) for a target that is not ours to replace.
    """
    repo = Path(repo)
    names = [model_name(read_manifest(Path(folder))) for folder in artifacts]
    check_repository(repo, list(dict.fromkeys(names)), force)
    written, replaced = [], set()
    for folder, name in zip(artifacts, names):
        model_dir = repo / name
        if force and name not in replaced and model_dir.exists():
            shutil.rmtree(model_dir)
        replaced.add(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        if not (model_dir / "config.pbtxt").exists():
            (model_dir / "config.pbtxt").write_text(render_config(name, **config))
        version = 1 + max((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), default=0)
        version_dir = model_dir / str(version)
        version_dir.mkdir()
        (version_dir / "model.py").write_text(MODEL_PY)  # first: a copy cut short still shows whose folder it is
        shutil.copytree(folder, version_dir / "artifact")
        written.append(version_dir)
    return written
