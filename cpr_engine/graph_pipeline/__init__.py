"""The GPU inference pipeline: fixed shapes, preallocated buffers, float16 network, one CUDA graph.

:class:`GraphPipeline` (``pipeline.py``) runs a trained ``Detector``; ``resize.py`` holds OpenCV's resize as
matrix products and ``network.py`` the float16 copy of the network. On CPU the pipeline runs eagerly in
float32 (for tests). ``cpr-bench --backend graph`` times it; ``benchmarks/gpu_check.py`` checks it on a GPU.
"""
from .pipeline import GraphPipeline

__all__ = ["GraphPipeline"]
