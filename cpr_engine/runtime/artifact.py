"""The deployable artifact: a folder with a manifest, an ONNX graph, NumPy arrays and a SHA-256 of each.

Layout (format version 5, 4 still read; every name from :mod:`cpr_engine.contract`)::

    manifest.json       format tag, versions, model settings, {file: {sha256, bytes}}
    manifest.sha256     SHA-256 of manifest.json's bytes (``sha256sum -c`` format); the manifest is
                        covered by the integrity check too (not listed in the manifest itself)
    network.onnx        the network part (fp32)
    network_opencv.onnx the network part in the ONNX subset OpenCV DNN imports (C++ runtime), same outputs
    network_fp16.onnx   with --fp16: the same graph in fp16 (input for a TensorRT build)
    network.plan        optional TensorRT engine (built on the target GPU)
    bank_4.npy, bank_8.npy, train_hists.npy, bank_fg.npy, centers.npy, memory_4.npy, memory_8.npy,
    location_offset.npy (fp16 banks, memories and hists with --fp16)

Arrays are plain ``.npy`` (read with ``allow_pickle=False``): no file of an artifact holds code.
NumPy + stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..config import VARIANTS
from ..contract import (ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, ARTIFACT_MIN_FORMAT_VERSION, BANK_DTYPES, MANIFEST,
                        MANIFEST_DIGEST, PIXEL_SCORE_MAX, THRESHOLD_BOUND_SLACK, array_file)
from ..errors import ModelFileError, OutputError, first_few
from ..inputs import score_bound


class ArtifactError(ModelFileError):
    """An artifact that cannot be used: names the folder and the problem."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path, manifest: dict) -> None:
    """Write manifest.json and manifest.sha256 (the digest of exactly the bytes written), each atomically."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    tmp_manifest, tmp_digest = folder / f".{MANIFEST}.tmp", folder / f".{MANIFEST_DIGEST}.tmp"
    tmp_manifest.write_bytes(data)
    tmp_digest.write_text(f"{hashlib.sha256(data).hexdigest()}  {MANIFEST}\n")
    os.replace(tmp_manifest, folder / MANIFEST)
    os.replace(tmp_digest, folder / MANIFEST_DIGEST)


def _check_manifest_digest(folder: Path, data: bytes) -> None:
    """Compare manifest.json's bytes with manifest.sha256; ArtifactError when absent, unreadable or different."""
    path = folder / MANIFEST_DIGEST
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST_DIGEST} (written by an older engine or tampered); "
                            f"re-export the model with this engine")
    try:
        recorded = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from exc
    if not recorded or recorded[0].lower() != hashlib.sha256(data).hexdigest():
        raise ArtifactError(f"{folder}: checksum mismatch for {MANIFEST} (does not match {MANIFEST_DIGEST}; "
                            f"tampered or corrupted manifest)")


def unlisted_entries(folder: Path, manifest: dict) -> list[str]:
    """Names in ``folder`` that ``manifest`` (its ``manifest.json``) does not list: neither a listed
    file, nor the manifest and its digest, nor a temporary of :func:`add_file`; sorted."""
    listed = {MANIFEST, MANIFEST_DIGEST, *(manifest.get("files") or {})}
    ours = listed | {f".{name}.tmp" for name in listed}  # add_file's temporaries
    return sorted(p.name for p in folder.iterdir() if p.name not in ours)


def check_artifact_target(out: str | Path, model_path: str | Path | None = None, force: bool = False) -> Path:
    """Refuse an artifact folder an export must not write: nothing of the user's is deleted or replaced.

    Called before any export work (``cpr-export``, :func:`cpr_engine.exporter.export_artifact`) and
    again by :func:`write_artifact`.

    Allowed: a path that does not exist; an empty folder; with ``force``, a folder that holds an
    artifact (a ``manifest.json`` of format ``ARTIFACT_FORMAT``) and nothing its manifest does not list.

    Raises:
        OutputError naming ``out``: an existing file or symbolic link; the folder that holds
        ``model_path`` (the model being exported) or any folder above it; a non-empty folder without
        ``force``; with ``force``, a folder that is not an artifact folder.
    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link; refusing to replace it (give a folder path)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is an existing file, not an artifact folder; refusing to replace it")
    if model_path is not None:
        model, target = Path(model_path).resolve(), out.resolve()
        if target == model or target in model.parents:
            raise OutputError(f"{out} holds the model being exported ({model_path}); refusing to replace it "
                              f"(choose another output folder)")
    if not out.exists():
        return out
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return out
    if not force:
        raise OutputError(f"{out} already exists and is not empty; --force replaces an artifact folder")
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise OutputError(f"{out} is not an artifact folder (no {MANIFEST} of format {ARTIFACT_FORMAT!r}); "
                          f"refusing to replace it")
    stray = unlisted_entries(out, manifest)
    if stray:
        raise OutputError(f"{out} is not an artifact folder: it also holds {first_few(stray)}, not listed in its "
                          f"{MANIFEST}; refusing to replace it")
    return out


def write_artifact(out: str | Path, manifest: dict, arrays: dict[str, np.ndarray], files: dict[str, Path],
                   force: bool = False, model_path: str | Path | None = None) -> Path:
    """Write an artifact folder atomically.

    Args:
        out: target folder, checked by :func:`check_artifact_target`: a non-empty one is an error
            unless ``force``, and then only an artifact folder is replaced, once the new artifact is
            complete (so a failed export never destroys a good one).
        manifest: settings to record (format tags, checksums are added here).
        arrays: name -> array, written as ``<name>.npy``.
        files: artifact file name -> existing file to copy in (e.g. the ONNX graph).
        model_path: the model file being exported, if known: ``out`` may not hold it.
    Returns:
        the artifact folder.
    """
    out = check_artifact_target(out, model_path, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = None
    try:
        for name, array in arrays.items():
            np.save(tmp / array_file(name), np.ascontiguousarray(array), allow_pickle=False)
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        entries = sorted(p.name for p in tmp.iterdir())
        record = {name: {"sha256": sha256_of(tmp / name), "bytes": (tmp / name).stat().st_size} for name in entries}
        full = {"format": ARTIFACT_FORMAT, "format_version": ARTIFACT_FORMAT_VERSION, **manifest, "files": record}
        _write_manifest(tmp, full)
        if out.exists():
            # a fresh folder of our own for the old artifact: no other path next to ``out`` is touched
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # the old artifact back in place
                raise
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and out.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """Read and check an artifact's manifest (format, version, its own digest, files present, checksums, settings).

    Args:
        verify: check the SHA-256 of manifest.json (against manifest.sha256) and of every listed
            file. The settings are range-checked (:func:`check_settings`) either way.
    Raises:
        ArtifactError naming the folder and the problem: not an artifact, unreadable manifest,
        another format, a newer or unknown format version, no or another manifest.sha256, a missing
        file, a checksum mismatch (a tampered or corrupted file), a setting the engine cannot run.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} is not a cpr-engine artifact: no {MANIFEST}")
    try:
        data = path.read_bytes()
        manifest = json.loads(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # nesting deeper than Python's stack
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a cpr-engine artifact manifest (format tag {ARTIFACT_FORMAT!r} missing)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > ARTIFACT_FORMAT_VERSION or version < ARTIFACT_MIN_FORMAT_VERSION:
        raise ArtifactError(f"{folder}: artifact format version {version!r}; this engine reads versions "
                            f"{ARTIFACT_MIN_FORMAT_VERSION}..{ARTIFACT_FORMAT_VERSION} (re-export the model with "
                            f"this engine, or upgrade cpr-engine)")
    if verify:
        _check_manifest_digest(folder, data)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{path}: manifest lists no files")
    for name, entry in files.items():
        target = folder / name
        if Path(name).name != name or name in (MANIFEST, MANIFEST_DIGEST):
            raise ArtifactError(f"{path}: file name {name!r} is not a plain name")
        if not target.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in the manifest is missing")
        if verify and (not isinstance(entry, dict) or sha256_of(target) != entry.get("sha256")):
            raise ArtifactError(f"{folder}: checksum mismatch for {name} (tampered or corrupted file)")
    check_settings(folder, manifest)
    return manifest


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: the settings :func:`check_settings` range-checks
RANGED_SETTINGS = ("variant", "bank_dtype", "strides", "image_size", "n_train", "grid", "descriptor_dims", "n_clusters",
                   "top_k", "kept_blocks", "windows", "blur_sigma", "top_t", "use_foreground", "foreground_on_map",
                   "pixel_normal", "threshold")


def check_settings(folder: str | Path, manifest: dict, what: str = "manifest setting") -> None:
    """Range-check every setting of ``manifest`` the runtimes use against what the engine can run.

    Settings that are absent are not checked here (``ArtifactDetector.load`` requires its own);
    each present one must hold a value the engine can run. The array files are checked against
    these settings by ``ArtifactDetector`` (shapes, dtype, descriptor_dims, finite values).

    ``what`` names the settings in messages ("manifest setting"; a model file's are "setting").

    Raises:
        ArtifactError naming the folder, the key, the value and what is allowed.
    """
    def bad(key: str, allowed: str):
        return ArtifactError(f"{folder}: {what} '{key}' = {manifest.get(key)!r} is not allowed: "
                             f"must be {allowed}")

    m = manifest
    for key in RANGED_SETTINGS:  # given as null is not absent: the checks below would skip it
        if key in m and m[key] is None:
            raise bad(key, "a value, not null")
    if "variant" in m and m["variant"] not in VARIANTS:
        raise bad("variant", f"one of {VARIANTS}")
    if "bank_dtype" in m and m["bank_dtype"] not in BANK_DTYPES:
        raise bad("bank_dtype", f"one of {BANK_DTYPES}")
    strides = m.get("strides")
    if strides is not None and not (isinstance(strides, list) and len(strides) == 2 and all(map(_is_int, strides))
                                    and 1 <= strides[0] < strides[1]):
        raise bad("strides", "two increasing integer strides >= 1 (fine, coarse)")
    size = m.get("image_size")
    if size is not None:
        largest = strides[1] if strides else 1
        if not (_is_int(size) and size > 0 and size % largest == 0):
            raise bad("image_size", f"a positive multiple of the largest stride ({largest})")
    if "n_train" in m and not (_is_int(m["n_train"]) and m["n_train"] >= 1):
        raise bad("n_train", "an integer >= 1")
    fine_side = size // strides[0] if size is not None and strides else None
    if "grid" in m and not (_is_int(m["grid"]) and 1 <= m["grid"] <= (fine_side or m["grid"])):
        raise bad("grid", f"an integer in [1, fine map side = {fine_side}]")
    dims = m.get("descriptor_dims")
    if dims is not None and not (isinstance(dims, list) and len(dims) == 2 and all(_is_int(d) and d >= 1 for d in dims)):
        raise bad("descriptor_dims", "two integers >= 1 (D of the fine and the coarse descriptors)")
    if "n_clusters" in m and not (_is_int(m["n_clusters"]) and m["n_clusters"] >= 2):
        raise bad("n_clusters", "an integer >= 2")
    if "top_k" in m:
        n_train = m.get("n_train")
        if not (_is_int(m["top_k"]) and 1 <= m["top_k"] <= (n_train if n_train is not None else m["top_k"])):
            raise bad("top_k", f"an integer in [1, n_train = {n_train}] (the number of training images)")
    if "kept_blocks" in m:
        blocks = m["grid"] ** 2 if "grid" in m else None
        if not (_is_int(m["kept_blocks"]) and 1 <= m["kept_blocks"] <= (blocks or m["kept_blocks"])):
            raise bad("kept_blocks", f"an integer in [1, grid^2 = {blocks}]")
    if "windows" in m:
        windows = m["windows"]
        sides = [size // s for s in strides] if size is not None and strides else None
        limits = [2 * side - 1 for side in sides] if sides else None
        ok = isinstance(windows, list) and len(windows) == 2 and all(
            _is_int(r) and r >= 1 and r % 2 == 1 for r in windows)
        if ok and limits:
            ok = all(r <= limit for r, limit in zip(windows, limits))
        if not ok:
            limit_text = f", at most {limits} (2 x map side - 1; map sides {sides})" if limits else ""
            raise bad("windows", f"two odd integers >= 1 (fine, coarse scale){limit_text}")
    if "blur_sigma" in m and not (_is_number(m["blur_sigma"]) and math.isfinite(m["blur_sigma"])
                                  and 0 <= m["blur_sigma"] <= (size or m["blur_sigma"])):
        raise bad("blur_sigma", f"a finite number in [0, image_size = {size}]")
    if "top_t" in m:
        pixels = size * size if size is not None else None
        if not (_is_int(m["top_t"]) and 1 <= m["top_t"] <= (pixels or m["top_t"])):
            raise bad("top_t", f"an integer in [1, image_size^2 = {pixels}]")
    for key in ("use_foreground", "foreground_on_map"):
        if key in m and not isinstance(m[key], bool):
            raise bad(key, "true or false (a JSON boolean)")
    normal = m.get("pixel_normal")
    if normal is not None and not (isinstance(normal, list) and len(normal) == 2 and all(map(_is_number, normal))
                                   and all(map(math.isfinite, normal))
                                   and 0 <= normal[0] <= normal[1] <= PIXEL_SCORE_MAX):
        raise bad("pixel_normal", f"two finite numbers 0 <= median <= max <= {PIXEL_SCORE_MAX:g}")
    if "threshold" in m:
        threshold = m["threshold"]
        if not (_is_number(threshold) and math.isfinite(threshold) and threshold >= 0):
            raise bad("threshold", "a finite number >= 0")
        if normal is not None and _is_int(m.get("top_t")) and size is not None:
            # training keeps the threshold at most this (inputs.score_bound): a larger one would pass
            # real defects as good
            bound = score_bound(m["top_t"], size, normal[1])
            if threshold > bound * (1 + THRESHOLD_BOUND_SLACK) + 1e-6:
                raise bad("threshold", f"a finite number in [0, {bound:.6g}] (top_t x the largest "
                                       f"leave-one-out pixel score, pixel_normal[1])")


def add_file(folder: str | Path, name: str, src: str | Path) -> dict:
    """Add (or replace) one file of a verified artifact and record its checksum in the manifest.

    Used to put a TensorRT plan built on the target machine into an exported artifact. The
    manifest is rewritten atomically after the file is in place.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if Path(name).name != name or name in (MANIFEST, MANIFEST_DIGEST):
        raise ArtifactError(f"{folder}: cannot add a file named {name!r}")
    tmp = folder / f".{name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, folder / name)
    manifest["files"][name] = {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
    _write_manifest(folder, manifest)
    return manifest


def load_array(folder: str | Path, name: str, mmap: bool = True) -> np.ndarray:
    """``<name>.npy`` of an artifact, memory-mapped by default (else read into memory), C-contiguous, never
    unpickled (ArtifactError naming the file when it is not a plain .npy array)."""
    file = array_file(name)
    try:  # mapped first: a header claiming more data than the file holds fails here, before any allocation
        array = np.load(Path(folder) / file, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays (a pickle inside), a damaged header, a header larger than the file
        raise ArtifactError(f"{folder}: {file} is not a plain .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray):  # np.load opens a zip (.npz) archive too
        array.close()
        raise ArtifactError(f"{folder}: {file} is not a plain .npy array (a {type(array).__name__})")
    if not array.flags.c_contiguous:  # stored in Fortran order: the kernels read rows
        return np.ascontiguousarray(array)
    return array if mmap else np.array(array)
