"""A saved copy of a tiny detector with a non-uniform location weight, so that the runtimes' parity
tests cover the weight (training keeps it only where the validation split prefers it)."""
from pathlib import Path

import torch


def with_location_weight(detector, folder: Path) -> Path:
    """Save ``detector`` with location_weight = an asymmetric ramp in [0.25, 2.25]; returns model.pt's path."""
    from cpr_engine import Detector

    det = Detector.load(detector.save(Path(folder) / "unweighted.pt"), device="cpu")
    side = det.model.location_weight.shape[-1]
    ramp = torch.linspace(0.5, 1.5, side)
    with torch.no_grad():
        det.model.location_weight.copy_(ramp[:, None] * ramp.flip(0)[None] ** 2)
    return det.save(Path(folder) / "model.pt")
