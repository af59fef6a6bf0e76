"""``cpr-serve``: artifacts served by a real Triton Inference Server through PyTriton.

One model per artifact, named by its category; artifacts of the same category become versions
1, 2, ... in the order given (Triton serves the highest by default). Triton listens on private
loopback ports behind the :class:`~.gateway.Gateway` (request-size limit, one-line errors);
:class:`Service` starts Triton again when it dies.
"""
from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codec import ServedModel, error_message
from .environment import check_numpy, with_own_libpython
from .gateway import Gateway, Upstream
from .spec import INPUTS, OUTPUTS, model_name
from .stock import free_loopback_ports

LOGGER = logging.getLogger(__name__)
# PyTriton 0.7's model stubs wait 1 s (hard-coded) for the first instance's handshake socket; on a
# loaded machine the other instances can miss it and the model load fails. Starting again works.
HANDSHAKE_RACE = "Timeout occurred while waiting for config file"
START_ATTEMPTS = 3
MAX_REQUEST_MB = 256  # a 64-megapixel RGB image (the default pixel budget) as a binary tensor fits
RESTARTS_PER_WINDOW, RESTART_WINDOW_S = 5, 300.0  # more restarts than this in the window: give up


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
    max_request_bytes: int = MAX_REQUEST_MB * 2**20  # largest HTTP body / gRPC message accepted


def _bind_function(model: ServedModel):
    """A PyTriton inference callable (list of requests -> list of output dicts) over ``model``."""
    def infer(requests):
        answers = model.run([{name: request[name] for name in request.keys()} for request in requests])
        errors = [a for a in answers if isinstance(a, Exception)]
        if errors:  # PyTriton answers a whole dynamic batch with one error; the gateway makes it one line
            raise ValueError(" / ".join(dict.fromkeys(error_message(e) for e in errors)))
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


def _load_models(artifacts: list[str | Path], options: ServeOptions) -> list[tuple[str, int, ServedModel]]:
    from ..runtime.detector import ArtifactDetector

    return [(name, version, ServedModel(ArtifactDetector.load(folder), options.map_downscale))
            for name, version, folder in versioned_models(artifacts)]


def start_triton(models: list[tuple[str, int, ServedModel]], options: ServeOptions, upstream: Upstream):
    """Start Triton on the loopback ports of ``upstream`` and bind ``models``; returns the running ``Triton``.

    Raises:
        RuntimeError for an unusable environment (or what PyTriton raises when Triton cannot start).
    """
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    check_numpy()
    with_own_libpython(os.environ)  # the server process inherits os.environ
    config = TritonConfig(http_address=upstream.host, http_port=upstream.http_port, grpc_address=upstream.host,
                          grpc_port=upstream.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s,
                          log_verbose=options.log_verbose)
    batching = ModelConfig(max_batch_size=options.max_batch_size,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us))
    inputs = [Tensor(name=t.name, dtype=t.dtype if t.dtype is not np.object_ else bytes, shape=t.dims,
                     optional=True) for t in INPUTS]
    outputs = [Tensor(name=t.name, dtype=t.dtype, shape=t.dims) for t in OUTPUTS]

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


class Service:
    """What ``cpr-serve`` runs: Triton (PyTriton) on private loopback ports behind the public :class:`Gateway`.

    Args:
        artifacts: artifact folders (loaded once, before anything listens).
        options: ports, batching, request-size limit.
    Raises:
        ArtifactError for a bad artifact, RuntimeError for an unusable environment, OSError when a
        public port is taken.
    """

    def __init__(self, artifacts: list[str | Path], options: ServeOptions):
        self.options = options
        self.models = _load_models(artifacts, options)
        self.upstream = Upstream(*free_loopback_ports(2))
        self.triton = start_triton(self.models, options, self.upstream)
        self.restarts: list[float] = []
        try:
            self.gateway = Gateway(options.host, options.http_port, options.grpc_port, self.upstream,
                                   options.max_request_bytes)
        except BaseException:
            self.triton.stop()
            raise

    def keep_alive(self) -> bool:
        """Start Triton again when it has died; False when it died more than ``RESTARTS_PER_WINDOW`` times
        in ``RESTART_WINDOW_S`` (then a supervisor such as systemd should take over)."""
        if self.triton.is_alive():
            return True
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self.restarts) > RESTARTS_PER_WINDOW:
            return False
        LOGGER.error("cpr-serve: the Triton server stopped unexpectedly; starting it again (restart %d of at most "
                     "%d in %.0f s)", len(self.restarts), RESTARTS_PER_WINDOW, RESTART_WINDOW_S)
        self.triton.stop()
        self.upstream.http_port, self.upstream.grpc_port = free_loopback_ports(2)
        self.triton = start_triton(self.models, self.options, self.upstream)
        return True

    def stop(self) -> None:
        """Close the public ports, then stop Triton."""
        try:
            self.gateway.stop()
        finally:
            self.triton.stop()


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
