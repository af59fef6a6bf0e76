"""Anomaly-detection metrics (NumPy/SciPy only, no torch or scikit-learn at runtime).

All are exact, sort-based O(n log n) and group tied scores the way scikit-learn does.

* :func:`image_auroc` -- ROC AUC of image scores ``(N,)`` vs labels ``(N,)``.
* :func:`pixel_auroc` -- ROC AUC over all pixels of maps/masks ``(N, H, W)``.
* :func:`pixel_ap` -- average precision over all pixels (``sum (R_n - R_{n-1}) P_n``).
* :func:`pixel_aupro` -- area under the PRO curve up to an FPR limit (MVTec AD convention);
  :func:`pro_curve` -- the curve itself, for plots.
* :func:`f1_max` -- best F1 over thresholds and that threshold.
* :func:`compute_all` -- all of the above in one dict.
"""
from .ap import pixel_ap
from .aupro import pixel_aupro, pro_curve
from .auroc import image_auroc, pixel_auroc
from .compute import compute_all
from .f1 import f1_max

__all__ = ["image_auroc", "pixel_auroc", "pixel_ap", "pixel_aupro", "pro_curve", "f1_max", "compute_all"]
