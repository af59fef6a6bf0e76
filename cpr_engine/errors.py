"""The engine's error types.

Every entry point (API and CLI) raises one of these for a problem the user can fix, with a one-line
message that names it: the file or argument, what was received, what is allowed. A CLI prints that
line and exits 2 (the traceback only under ``--debug``); the API lets it propagate.

- :class:`CPRError`: the base.
- :class:`InputError` (a ``ValueError``): an image, array, folder, argument or flag.
- :class:`ModelFileError` (a ``ValueError``): a model file or artifact that is missing, of another
  format or version, damaged, tampered with, or holds settings the engine cannot run.
- :class:`OutputError`: an output that would delete or replace something of the user's.
- :class:`NonFiniteScoreError`: a score, threshold or anomaly map that is NaN/inf, so no verdict can
  be given (fail closed: such an image is never passed as good).
"""
from __future__ import annotations


class CPRError(Exception):
    """A problem the user can fix; ``str(error)`` is one line naming it."""


class InputError(CPRError, ValueError):
    """Bad input: an image, array, folder, argument or flag."""


class ModelFileError(CPRError, ValueError):
    """A model file or artifact that cannot be used as it is."""


class OutputError(CPRError):
    """An output that would delete or replace something of the user's."""


class NonFiniteScoreError(CPRError):
    """A non-finite image score, threshold or anomaly map: no verdict (never "good"); names the image."""


def first_few(items, shown: int = 3, sep: str = ", ") -> str:
    """The first ``shown`` of ``items`` joined by ``sep``, then " and N more" when there are more."""
    items = [str(item) for item in items]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return sep.join(items[:shown]) + more


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (newlines folded), its type name when it has none."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def torch_load_failure(path, error: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in one short line for the user (the file is never
    unpickled, so torch's advice to load it unsafely is left out)."""
    import pickle
    from pathlib import Path

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return "the file is empty"
    if isinstance(error, pickle.UnpicklingError):
        return "damaged, not a PyTorch file, or holding objects other than tensors (never unpickled)"
    return one_line(error)[:300]
