"""A saved copy of a tiny detector with a non-uniform location offset, so that the runtimes' parity
tests cover the offset (training keeps it only where the validation split prefers it)."""
from pathlib import Path

import torch


def with_location_offset(detector, folder: Path, foreground_mode: str | None = None) -> Path:
    """Save ``detector`` with location_offset = an asymmetric ramp in [-0.13, 0.36] (large enough to clamp some
    patch scores at 0) and, when given, another foreground mode ("map", "score", "off"); returns model.pt's path."""
    from cpr_engine import Detector

    det = Detector.load(detector.save(Path(folder) / "unweighted.pt"), device="cpu")
    if foreground_mode is not None:
        det.model.set_foreground_mode(foreground_mode)
    side = det.model.location_offset.shape[-1]
    ramp = torch.linspace(0.5, 1.5, side)
    with torch.no_grad():
        det.model.location_offset.copy_(0.15 * (ramp[:, None] * ramp.flip(0)[None] ** 3 - 1))
    return det.save(Path(folder) / "model.pt")
