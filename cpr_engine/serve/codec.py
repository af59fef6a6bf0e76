"""Request tensors -> images -> response tensors; shared by cpr-serve and the stock repository's model.py.

NumPy, Pillow and the runtime only (no Triton import), so it is tested without a server.
"""
from __future__ import annotations

import numpy as np

from ..data.imageio import ImageReadError, decode_image
from ..errors import CPRError, one_line
from ..inputs import verdict
from ..preprocess import resize_map
from .spec import IMAGE, IMAGE_BYTES

#: Prefix of the message of a request the model refused (bad input, not a server fault); the
#: gateway of cpr-serve answers such a request with HTTP 400 / gRPC INVALID_ARGUMENT.
BAD_REQUEST = "cpr-bad-request: "


def is_bad_request(error: Exception) -> bool:
    """True when ``error`` (an answer of :meth:`ServedModel.run`) is the request's fault, not the server's."""
    return isinstance(error, ValueError)


def error_message(error: Exception) -> str:
    """One line for an error answer: ``BAD_REQUEST`` + the message for a bad request, else ``Type: message``."""
    return BAD_REQUEST + one_line(error) if is_bad_request(error) else f"{type(error).__name__}: {one_line(error)}"


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Encoded PNG / JPEG / BMP / TIFF bytes -> (H, W, 3) uint8 RGB, decoded as ``read_image`` decodes files.

    Raises:
        ImageReadError naming the input and the problem (empty, not an image, truncated or corrupt).
    """
    try:
        return decode_image(data)
    except ImageReadError as e:
        raise ImageReadError(None, f"image_bytes: {e.reason}") from e


def request_images(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The images of one request: ``image`` (B, H, W, 3) uint8 or ``image_bytes`` (B, 1) bytes -> B arrays.

    Raises:
        ValueError (ImageReadError for undecodable bytes) naming the problem.
    """
    given = [t.name for t in (IMAGE, IMAGE_BYTES) if inputs.get(t.name) is not None]
    if len(given) != 1:
        raise ValueError(f"send exactly one of the inputs '{IMAGE.name}' (uint8 B x H x W x 3) or "
                         f"'{IMAGE_BYTES.name}' (B x 1 encoded images); got {given or 'none'}")
    if given[0] == IMAGE.name:
        batch = np.asarray(inputs[IMAGE.name])
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"'{IMAGE.name}' must be uint8 of shape (B, H, W, 3), got {batch.dtype} {batch.shape}")
        if 0 in batch.shape:
            raise ValueError(f"'{IMAGE.name}' is empty: shape {batch.shape}")
        return list(batch)
    items = np.asarray(inputs[IMAGE_BYTES.name]).reshape(-1)
    if items.size == 0:
        raise ValueError(f"'{IMAGE_BYTES.name}' is empty: shape {np.shape(inputs[IMAGE_BYTES.name])}")
    images = [decode_image_bytes(bytes(item)) for item in items]
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"the images of one '{IMAGE_BYTES.name}' request must have one size, got "
                         f"{sorted({im.shape[:2] for im in images})}; send them in separate requests")
    return images


def response_tensors(scores: np.ndarray, maps: np.ndarray, shape: tuple[int, int], threshold: float,
                     map_downscale: int) -> dict[str, np.ndarray]:
    """Outputs of one request from B model results.

    Args:
        scores: (B,) float32; maps: (B, S, S) float32 at model resolution; shape: (H, W) of the inputs.
    Returns:
        ``score`` (B, 1) float32, ``anomaly_map`` (B, H // k, W // k) float32, ``is_anomalous`` (B, 1) bool.
    Raises:
        NonFiniteScoreError when a score, the threshold or a map is NaN/inf (never answered "good").
    """
    size = (max(1, shape[0] // map_downscale), max(1, shape[1] // map_downscale))
    scores = np.asarray(scores, np.float32).reshape(-1, 1)
    return {"score": scores,
            "anomaly_map": np.stack([resize_map(m, size) for m in maps]).astype(np.float32, copy=False),
            "is_anomalous": np.array([[verdict(np.float32(s), np.float32(threshold), m, index=i)]
                                      for i, (s, m) in enumerate(zip(scores[:, 0], maps))], dtype=bool).reshape(-1, 1)}


class ServedModel:
    """An ``ArtifactDetector`` answering Triton requests: all images of a dynamic batch in one network call."""

    def __init__(self, detector, map_downscale: int = 1):
        if map_downscale < 1:
            raise ValueError(f"map_downscale must be >= 1, got {map_downscale}")
        self.detector, self.map_downscale = detector, int(map_downscale)

    def run(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        """Answer each request (input name -> array) with its output tensors, or the error it caused.

        The requests' images are scored in one call; when the detector refuses that batch (an image
        below its finest patch grid, ...), each request is scored alone, so that only the request
        at fault gets the error."""
        parsed = []
        for inputs in requests:
            try:
                parsed.append(request_images(inputs))
            except ValueError as e:
                parsed.append(e)
        batches = [p for p in parsed if not isinstance(p, Exception)]
        try:
            answered = self._answer(batches) if batches else []
        except ValueError:
            answered = []
            for images in batches:
                try:
                    answered.extend(self._answer([images]))
                except ValueError as e:
                    answered.append(e)
        answers = iter(answered)
        return [p if isinstance(p, Exception) else next(answers) for p in parsed]

    def _answer(self, batches: list[list[np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        """Outputs of each request's images (a list per request), all scored in one detector call."""
        scores, maps = self.detector.score_batch([im for images in batches for im in images])
        answers, start = [], 0
        for images in batches:
            end = start + len(images)
            try:
                answers.append(response_tensors(scores[start:end], maps[start:end], images[0].shape[:2],
                                                self.detector.threshold, self.map_downscale))
            except CPRError as e:  # a non-finite score: this request gets the error, the others their answers
                answers.append(e)
            start = end
        return answers
