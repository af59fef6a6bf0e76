"""Edits of an exported artifact folder: what a buggy or older exporter could write (listed and
signed), or tampering."""
import hashlib
import json
from pathlib import Path

import numpy as np

from cpr_engine.contract import MANIFEST, MANIFEST_DIGEST
from cpr_engine.runtime.artifact import add_file


def edit_manifest(folder: Path, resign: bool = True, drop: tuple[str, ...] = (), **changes) -> None:
    """Change (``changes``) or remove (``drop``) settings of ``folder``'s manifest.json; ``resign``: rewrite
    manifest.sha256 to match (a bad exporter, or an older one, to reach the checks behind the digest),
    else leave it (tampering)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    for key in drop:
        del manifest[key]
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (folder / MANIFEST).write_bytes(data)
    if resign:
        (folder / MANIFEST_DIGEST).write_text(f"{hashlib.sha256(data).hexdigest()}  {MANIFEST}\n")


def replace_array(folder: Path, name: str, array: np.ndarray) -> None:
    """Replace ``<name>.npy`` of ``folder`` by ``array``, its checksum recorded and the manifest re-signed
    (``add_file``); the new file is staged beside the folder."""
    staged = folder.parent / f"{folder.name}.{name}.npy"
    np.save(staged, array, allow_pickle=False)
    add_file(folder, f"{name}.npy", staged)
    staged.unlink()


def misshapen_memory_and_offset(folder: Path) -> dict[str, np.ndarray]:
    """{array name: a replacement of the wrong shape} for the memory and the location offset of ``folder``."""
    memory = np.load(folder / "memory_8.npy", allow_pickle=False)
    offset = np.load(folder / "location_offset.npy", allow_pickle=False)
    return {"memory_8": np.ascontiguousarray(memory[:, :-1]),  # one descriptor channel short of its bank
            "location_offset": np.ascontiguousarray(offset[:-1])}  # one row short of the fine map
