"""The deployable artifact: a folder with a manifest, an ONNX graph, NumPy arrays and a SHA-256 of each.

Layout (format version 1)::

    manifest.json       format tag, versions, model settings, {file: {sha256, bytes}}
    network.onnx        the network part (fp32)
    network_opencv.onnx the network part for OpenCV DNN (C++ runtime; outputs feat_4 instead of hist)
    network_fp16.onnx   with --fp16: the same graph in fp16 (input for a TensorRT build)
    network.plan        optional TensorRT engine (built on the target GPU)
    bank_4.npy, bank_8.npy, train_hists.npy, bank_fg.npy, centers.npy   (fp16 banks and hists with --fp16)

Arrays are plain ``.npy`` (read with ``allow_pickle=False``): no file of an artifact holds code.
NumPy + stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelFileError

ARTIFACT_FORMAT = "cpr-engine-artifact"
ARTIFACT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ModelFileError):
    """An artifact that cannot be used: names the folder and the problem."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_artifact(out: str | Path, manifest: dict, arrays: dict[str, np.ndarray], files: dict[str, Path],
                   force: bool = False) -> Path:
    """Write an artifact folder atomically.

    Args:
        out: target folder; an existing one is an error unless ``force`` (then it is replaced only
            once the new artifact is complete, so a failed export never destroys a good one).
        manifest: settings to record (format tags, checksums are added here).
        arrays: name -> array, written as ``<name>.npy``.
        files: artifact file name -> existing file to copy in (e.g. the ONNX graph).
    Returns:
        the artifact folder.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        entries = sorted(p.name for p in tmp.iterdir())
        record = {name: {"sha256": sha256_of(tmp / name), "bytes": (tmp / name).stat().st_size} for name in entries}
        full = {"format": ARTIFACT_FORMAT, "format_version": ARTIFACT_FORMAT_VERSION, **manifest, "files": record}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """Read and check an artifact's manifest (format, version, files present, checksums).

    Raises:
        ArtifactError naming the folder and the problem: not an artifact, unreadable manifest,
        another format, a newer or unknown format version, a missing file, a checksum mismatch
        (a tampered or corrupted file).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} is not a cpr-engine artifact: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a cpr-engine artifact manifest (format tag {ARTIFACT_FORMAT!r} missing)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > ARTIFACT_FORMAT_VERSION or version < 1:
        raise ArtifactError(f"{folder}: artifact format version {version!r}; this engine reads versions "
                            f"1..{ARTIFACT_FORMAT_VERSION} (re-export the model, or upgrade cpr-engine)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{path}: manifest lists no files")
    for name, entry in files.items():
        target = folder / name
        if Path(name).name != name:
            raise ArtifactError(f"{path}: file name {name!r} is not a plain name")
        if not target.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in the manifest is missing")
        if verify and sha256_of(target) != entry.get("sha256"):
            raise ArtifactError(f"{folder}: checksum mismatch for {name} (tampered or corrupted file)")
    return manifest


def add_file(folder: str | Path, name: str, src: str | Path) -> dict:
    """Add (or replace) one file of a verified artifact and record its checksum in the manifest.

    Used to put a TensorRT plan built on the target machine into an exported artifact. The
    manifest is rewritten atomically after the file is in place.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if Path(name).name != name or name == MANIFEST:
        raise ArtifactError(f"{folder}: cannot add a file named {name!r}")
    tmp = folder / f".{name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, folder / name)
    manifest["files"][name] = {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
    tmp_manifest = folder / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp_manifest, folder / MANIFEST)
    return manifest


def load_array(folder: str | Path, name: str, mmap: bool = True) -> np.ndarray:
    """``<name>.npy`` of an artifact, memory-mapped by default, never unpickled."""
    return np.load(Path(folder) / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
