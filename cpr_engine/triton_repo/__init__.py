"""A plain Triton model repository (``cpr-export --triton-repo DIR``) that a stock ``tritonserver`` loads.

Layout, one model per artifact (name: the category; same category: versions 1, 2, ...)::

    DIR/<category>/config.pbtxt          Python backend, dynamic batching, instance group, tensors
    DIR/<category>/<version>/            1, 2, ...: each artifact added under a category is a new version
    DIR/<category>/<version>/model.py    3 lines: imports cpr_engine.triton_repo.python_model
    DIR/<category>/<version>/artifact/   a copy of the artifact folder

The server's Python environment must import ``cpr_engine`` (``pip install cpr-engine[serve]`` in the
image that runs ``tritonserver``) with NumPy 1.x.
"""
from .writer import render_config, write_repository

__all__ = ["render_config", "write_repository"]
