"""``cpr-serve``: artifacts served by a real Triton Inference Server through PyTriton.

One model per artifact, named by its category; artifacts of the same category become versions
1, 2, ... in the order given (Triton serves the highest by default).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codec import ServedModel
from .environment import check_numpy, with_own_libpython
from .spec import INPUTS, OUTPUTS, model_name

LOGGER = logging.getLogger(__name__)
# PyTriton 0.7's model stubs wait 1 s (hard-coded) for the first instance's handshake socket; on a
# loaded machine the other instances can miss it and the model load fails. Starting again works.
HANDSHAKE_RACE = "Timeout occurred while waiting for config file"
START_ATTEMPTS = 3


@dataclass
class ServeOptions:
    """Server settings (ports 0 are not allowed by Triton: pick free ones)."""

    host: str = "127.0.0.1"  # this machine only; "0.0.0.0" listens on every interface
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch_size: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    map_downscale: int = 1
    exit_timeout_s: int = 5
    log_verbose: int = 0


def _bind_function(model: ServedModel):
    """A PyTriton inference callable (list of requests -> list of output dicts) over ``model``."""
    def infer(requests):
        answers = model.run([{name: request[name] for name in request.keys()} for request in requests])
        errors = [a for a in answers if isinstance(a, Exception)]
        if errors:  # PyTriton answers a whole dynamic batch with one error
            raise ValueError("; ".join(f"{type(e).__name__}: {e}" for e in errors))
        return answers
    return infer


def versioned_models(artifacts: list[str | Path]) -> list[tuple[str, int, Path]]:
    """(model name, version, folder) of each artifact: name from the category, versions 1.. per name."""
    from ..runtime.artifact import read_manifest

    counts: dict[str, int] = defaultdict(int)
    out = []
    for folder in artifacts:
        name = model_name(read_manifest(Path(folder), verify=False))
        counts[name] += 1
        out.append((name, counts[name], Path(folder)))
    return out


def start_triton(artifacts: list[str | Path], options: ServeOptions):
    """Load the artifacts, start Triton and bind one model per artifact; returns the running ``Triton``.

    Raises:
        ArtifactError for a bad artifact, RuntimeError for an unusable environment.
    """
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from ..runtime.detector import ArtifactDetector

    check_numpy()
    with_own_libpython(os.environ)  # the server process inherits os.environ
    config = TritonConfig(http_address=options.host, http_port=options.http_port, grpc_address=options.host,
                          grpc_port=options.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s,
                          log_verbose=options.log_verbose)
    batching = ModelConfig(max_batch_size=options.max_batch_size,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us))
    inputs = [Tensor(name=t.name, dtype=t.dtype if t.dtype is not np.object_ else bytes, shape=t.dims,
                     optional=True) for t in INPUTS]
    outputs = [Tensor(name=t.name, dtype=t.dtype, shape=t.dims) for t in OUTPUTS]
    models = [(name, version, ServedModel(ArtifactDetector.load(folder), options.map_downscale))
              for name, version, folder in versioned_models(artifacts)]

    def start_once():
        triton = Triton(config=config)
        try:
            for name, version, model in models:
                triton.bind(model_name=name, model_version=version,
                            infer_func=[_bind_function(model)] * options.instances,
                            inputs=inputs, outputs=outputs, config=batching, strict=True)
            triton.run()
        except BaseException:
            triton.stop()
            raise
        return triton

    return retry_handshake_race(start_once)


def retry_handshake_race(start):
    """``start()`` (starts a server or raises), called again on PyTriton's handshake race, at most
    ``START_ATTEMPTS`` times in all; any other error is raised at once. Returns what ``start`` returns."""
    for attempt in range(1, START_ATTEMPTS):
        try:
            return start()
        except Exception as e:
            if HANDSHAKE_RACE not in str(e):
                raise
            LOGGER.warning("cpr-serve: PyTriton's model handshake timed out (attempt %d of %d); starting again",
                           attempt, START_ATTEMPTS)
    return start()
