"""cpr-engine: industrial visual anomaly detection with CPR (Cascade Patch Retrieval).

Implements Li et al., "Target before Shooting: Accurate Anomaly Detection and Localization
under One Millisecond via Cascade Patch Retrieval", IEEE TIP 33 (2024), arXiv 2308.06748.

Public API: :class:`Detector`, :class:`CPRConfig`, ``__version__``.
"""
__version__ = "0.1.0"
__all__ = ["Detector", "CPRConfig", "__version__"]


def __getattr__(name):
    # Lazy, so that `import cpr_engine.metrics` (NumPy only) does not import torch.
    if name == "Detector":
        from .detector import Detector
        return Detector
    if name == "CPRConfig":
        from .config import CPRConfig
        return CPRConfig
    raise AttributeError(f"module 'cpr_engine' has no attribute {name!r}")
