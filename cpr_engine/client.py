"""``RemoteDetector``: a ``Detector`` whose model runs on a Triton server (``cpr-serve`` or a stock repository);
``wait_until_ready``: block until a server has loaded its models.

Needs ``tritonclient[http,grpc]`` (``pip install cpr-engine[serve]``). Not thread-safe: give each
thread its own ``RemoteDetector`` (they are cheap).
"""
from __future__ import annotations

import time
from urllib.parse import urlparse

import numpy as np

from .inputs import Prediction, as_image_list
from .serve.spec import IMAGE, IMAGE_BYTES, OUTPUT_NAMES, TRITON_DTYPES

PROTOCOLS = ("http", "grpc")


class RemoteDetector:
    """Score images on a served model with the ``predict`` signature and ``Prediction`` results of ``Detector``.

    Args:
        url: "http://host:8000", "grpc://host:8001" or "host:port" (then ``protocol``, default http).
        model: served model name (the artifact's category); ``version``: "" for the latest.
        timeout_s: network timeout of each request.
    """

    def __init__(self, url: str, model: str, version: str | int = "", protocol: str | None = None,
                 timeout_s: float = 60.0):
        parsed = urlparse(url if "://" in url else f"//{url}")
        self.protocol = protocol or parsed.scheme or "http"
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r} (from url {url!r})")
        if self.protocol == "http":
            import tritonclient.http as module
            self._client = module.InferenceServerClient(parsed.netloc, network_timeout=timeout_s,
                                                        connection_timeout=timeout_s)
        else:
            import tritonclient.grpc as module
            self._client = module.InferenceServerClient(parsed.netloc)
        self._module, self.address, self.model, self.version = module, parsed.netloc, model, str(version)
        self.timeout_s = timeout_s

    def _infer(self, name: str, batch: np.ndarray) -> list[Prediction]:
        tensor = self._module.InferInput(name, list(batch.shape), TRITON_DTYPES[batch.dtype.type])
        tensor.set_data_from_numpy(batch)
        outputs = [self._module.InferRequestedOutput(n) for n in OUTPUT_NAMES]
        extra = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self._client.infer(self.model, [tensor], model_version=self.version, outputs=outputs, **extra)
        scores, maps, verdicts = (result.as_numpy(n) for n in OUTPUT_NAMES)
        return [Prediction(float(s[0]), m.astype(np.float32, copy=False), bool(v[0]))
                for s, m, v in zip(scores, maps, verdicts)]

    def predict(self, images, batch_size: int = 8, color: str = "RGB"):
        """Score one image (-> ``Prediction``) or many (-> list), like ``Detector.predict``.

        Args:
            images: (H, W, 3) uint8 array, (B, H, W, 3) array, a path, a folder, or a list of them.
            batch_size: images per request (consecutive images of one size share a request; at most
                the server's --max-batch-size).
            color: channel order of array inputs, "RGB" or "BGR".
        Returns:
            ``Prediction(score, anomaly_map (H, W) float32, is_anomalous)``; the map is smaller when the
            server runs with --map-downscale.
        Raises:
            tritonclient.utils.InferenceServerException with the server's message for a refused request.
        """
        items, single = as_image_list(images, color)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results, start = [], 0
        while start < len(items):
            end = start + 1
            while end < len(items) and end - start < batch_size and items[end].shape == items[start].shape:
                end += 1
            results += self._infer(IMAGE.name, np.stack(items[start:end]))
            start = end
        return results[0] if single else results

    def predict_encoded(self, data: bytes | list[bytes]):
        """Score encoded image files (PNG/JPEG bytes, decoded by the server): one -> ``Prediction``, a list -> list.

        All images of a list must have one size (they travel in one request).
        """
        single = isinstance(data, (bytes, bytearray))
        batch = np.array([[bytes(d)] for d in ([data] if single else data)], dtype=np.object_)
        results = self._infer(IMAGE_BYTES.name, batch)
        return results[0] if single else results

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> "RemoteDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteDetector('{self.protocol}://{self.address}', model={self.model!r})"


def wait_until_ready(url: str, models: list[str], timeout_s: float = 120.0, process=None) -> None:
    """Block until the server at ``url`` (HTTP, "host:port") reports every model ready.

    Raises:
        TimeoutError after ``timeout_s``; RuntimeError when ``process`` (a ``subprocess.Popen``) exits first.
    """
    import tritonclient.http as http

    client = http.InferenceServerClient(urlparse(url if "://" in url else f"//{url}").netloc, connection_timeout=2.0,
                                        network_timeout=2.0)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
            try:
                if all(client.is_model_ready(m) for m in models):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.25)
    finally:
        client.close()
    raise TimeoutError(f"models {models} not ready at {url} after {timeout_s:.0f} s")
