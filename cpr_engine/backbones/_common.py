"""Helpers shared by all backbones: checkpoint loading and truncation to the feature taps."""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from ..errors import torch_load_failure

StateDict = Mapping[str, torch.Tensor]


def hub_checkpoint(file_name: str) -> str:
    """Path where torchvision caches ``file_name``: ``$TORCH_HOME/hub/checkpoints/<file_name>``.

    ``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``.
    """
    return os.path.join(torch.hub.get_dir(), "checkpoints", file_name)


def load_tensors(path):
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain containers, never code.
    Torch's warning about the file's pickle protocol is silenced (the file is read or refused either way)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True)


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_checkpoint(
    model: nn.Module,
    path: str,
    remap_keys: Callable[[StateDict], StateDict] | None = None,
) -> None:
    """Load the checkpoint at ``path`` into ``model`` with ``strict=True``.

    The file is read with ``torch.load(map_location="cpu", weights_only=True)``; a state dict
    wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped and ``remap_keys``
    (if given) renames legacy keys. Raises ``ValueError`` naming a few missing/unexpected keys,
    or the shape mismatch, when the checkpoint does not fit ``model``, or naming why the file is not a
    readable checkpoint (corrupt, not a torch file, a pickle with code: never run).
    """
    try:
        state = load_tensors(path)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one message naming it
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {torch_load_failure(path, exc)}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    if remap_keys is not None:
        state = remap_keys(state)
    expected = model.state_dict().keys()
    # BatchNorm fills in ``num_batches_tracked``, absent from pre-2018 checkpoints, by itself.
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match {type(model).__name__}: "
            f"missing keys [{_few(missing)}], unexpected keys [{_few(unexpected)}]"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shape mismatch, or a num_batches_tracked BatchNorm won't fill in
        raise ValueError(f"checkpoint {path} does not match {type(model).__name__}: {err}") from err


def truncate(model: nn.Module, keep: Iterable[str]) -> None:
    """Delete, in place, every submodule of ``model`` outside the dotted names in ``keep``.

    A kept module keeps its whole subtree; parents of kept modules stay as containers.
    """
    keep = set(keep)

    def prune(module: nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            name = prefix + child_name
            if name in keep:
                continue
            if any(k.startswith(name + ".") for k in keep):
                prune(child, name + ".")
            else:
                delattr(module, child_name)

    prune(model, "")
