"""``TritonPythonModel`` for Triton's Python backend: imported by the model.py of a written repository.

Runs inside the backend's stub process, where ``triton_python_backend_utils`` is importable.
Each request gets its own answer: a bad request is refused with its one-line error (HTTP 400 /
gRPC INVALID_ARGUMENT), the others of the same dynamic batch are served.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runtime.detector import ArtifactDetector
from ..errors import one_line
from ..serve.codec import ServedModel, is_bad_request
from ..serve.spec import INPUTS


class TritonPythonModel:
    """Loads ``<model dir>/<version>/artifact`` and answers requests with ``ServedModel``."""

    def initialize(self, args: dict) -> None:
        """Called once per instance; ``args`` as documented by the Python backend."""
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        downscale = int(config.get("parameters", {}).get("map_downscale", {}).get("string_value", "1"))
        folder = Path(args["model_repository"]) / args["model_version"] / "artifact"
        self.model = ServedModel(ArtifactDetector.load(folder), downscale)

    def execute(self, requests: list) -> list:
        """One ``InferenceResponse`` per request (an error response for a request that cannot be served)."""
        pb = self._pb
        inputs = []
        for request in requests:
            tensors = {t.name: pb.get_input_tensor_by_name(request, t.name) for t in INPUTS}
            inputs.append({name: t.as_numpy() for name, t in tensors.items() if t is not None})
        responses = []
        for answer in self.model.run(inputs):
            if isinstance(answer, Exception):  # one line; a bad request is HTTP 400 / gRPC INVALID_ARGUMENT
                code = pb.TritonError.INVALID_ARG if is_bad_request(answer) else pb.TritonError.INTERNAL
                responses.append(pb.InferenceResponse(error=pb.TritonError(one_line(answer), code)))
            else:
                responses.append(pb.InferenceResponse([pb.Tensor(k, v) for k, v in answer.items()]))
        return responses
