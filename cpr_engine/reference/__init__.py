"""PyTorch references of the native ops: one function per op, named as the op in ``cpr_engine.ops``
and ``csrc/`` (``reference.nn_search`` is what ``ops.nn_search`` computes with the native kernels).

The kernels are tested against these on awkward sizes (``tests/ops/``); ``cpr_engine.ops`` runs them
where the native kernels are not built or ``CPR_ENGINE_OPS=reference``.
"""
from .nn_search import nn_search
from .retrieval import codebook_histogram, hist_match, top_k
from .scoring import postprocess

__all__ = ["codebook_histogram", "hist_match", "top_k", "nn_search", "postprocess"]
