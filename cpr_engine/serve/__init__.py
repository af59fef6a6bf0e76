"""Serving cpr-engine artifacts on NVIDIA Triton Inference Server.

``spec``      the tensors of a served model (shared by PyTriton, the stock repository and the client)
``codec``     request tensors -> images, results -> response tensors (NumPy only)
``environment`` what the Python backend stub needs: this interpreter's libpython, NumPy 1.x
``app``       ``cpr-serve``: one PyTriton model per artifact, Triton restarted when it dies
``gateway``   cpr-serve's public HTTP / gRPC ports: request-size limit, one-line errors (stdlib + grpcio)
``stock``     run the ``tritonserver`` binary of the PyTriton wheel on a plain model repository

Nothing here imports PyTriton or tritonclient at import time except ``app``.
"""
