"""Data access for cpr-engine: strict image I/O, dataset layouts and the offline demo dataset.

NumPy + OpenCV + Pillow only: nothing in this package imports torch (a torch-free runtime uses it).
scikit-image is imported only by :func:`build_demo`, for its bundled photos.

Layouts (``dataset`` names): ``"mvtec"`` (MVTec AD), ``"btad"``, ``"mvtec3d"`` (MVTec 3D-AD, RGB),
``"visa"`` (through ``split_csv/1cls.csv``) and ``"folder"`` (generic MVTec-like folders).
Supervised mode (a few real defects in training): :func:`split_defects` (benchmark protocol) and
:func:`defect_folder_pairs` (a folder of defects with masks), read by :func:`read_defects`.
"""
from .datasets import DATASETS, detect_dataset, list_categories, load_split, validation_samples
from .demo import DEFECT_TYPES, DEMO_CATEGORIES, TEXTURE_CATEGORIES, build_demo
from .imageio import (ImageNotFoundError, ImageReadError, decode_image, read_image, read_mask, to_rgb_uint8,
                      write_image, write_mask)
from .samples import IMAGE_EXTENSIONS, Sample
from .supervised import SPLIT_SEED, defect_folder_pairs, read_defects, relative_names, split_defects

__all__ = [
    "ImageReadError",
    "ImageNotFoundError",
    "read_image",
    "decode_image",
    "read_mask",
    "to_rgb_uint8",
    "write_image",
    "write_mask",
    "Sample",
    "IMAGE_EXTENSIONS",
    "DATASETS",
    "list_categories",
    "load_split",
    "validation_samples",
    "detect_dataset",
    "build_demo",
    "DEMO_CATEGORIES",
    "TEXTURE_CATEGORIES",
    "DEFECT_TYPES",
    "SPLIT_SEED",
    "split_defects",
    "relative_names",
    "defect_folder_pairs",
    "read_defects",
]
