"""Edits of an exported artifact folder that a buggy exporter could make (listed and signed)."""
from pathlib import Path

import numpy as np

from cpr_engine.runtime.artifact import add_file


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
