"""Serving parts that need no server (run without PyTriton): decoding, request checks, repository layout."""
import json

import cv2
import numpy as np
import pytest

from cpr_engine.data import ImageReadError, read_image
from cpr_engine.errors import InputError
from cpr_engine.serve.codec import (ServedModel, decode_image_bytes, is_bad_request, request_images,
                                    response_tensors)
from cpr_engine.serve.environment import python_library_dir, with_own_libpython
from cpr_engine.triton_repo import render_config, write_repository


def _png(image):
    return cv2.imencode(".png", image[..., ::-1])[1].tobytes()


def test_decode_image_bytes_and_errors():
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image_bytes(_png(image)), image)
    data = _png(image)
    for bad, words in ((b"", "empty"), (b"hello", "image_bytes: not a recognised image format"), (data[:-20], "PNG")):
        with pytest.raises(ImageReadError, match=words):
            decode_image_bytes(bad)


def test_decoded_bytes_equal_read_image(tmp_path):
    """The server decodes uploads as read_image decodes files: 16-bit colour (full depth), gray, RGBA."""
    rng = np.random.default_rng(1)
    arrays = {"rgb16.png": rng.integers(0, 65536, (6, 9, 3), dtype=np.uint16),
              "gray.png": rng.integers(0, 256, (5, 4), dtype=np.uint8),
              "rgba.png": rng.integers(0, 256, (4, 7, 4), dtype=np.uint8)}
    for name, array in arrays.items():
        path = tmp_path / name
        assert cv2.imwrite(str(path), array)
        np.testing.assert_array_equal(decode_image_bytes(path.read_bytes()), read_image(path))
    with pytest.raises(ImageReadError, match="image_bytes: .*corrupt"):
        decode_image_bytes((tmp_path / "rgb16.png").read_bytes()[:-30] + b"IEND" + b"\0" * 26)


def test_request_images_checks():
    image = np.zeros((1, 4, 6, 3), np.uint8)
    assert [im.shape for im in request_images({"image": image})] == [(4, 6, 3)]
    with pytest.raises(ValueError, match="exactly one"):
        request_images({})
    with pytest.raises(ValueError, match="exactly one"):
        request_images({"image": image, "image_bytes": np.array([[b"x"]], dtype=object)})
    with pytest.raises(ValueError, match="uint8"):
        request_images({"image": image.astype(np.float32)})
    for empty in ((1, 0, 6, 3), (1, 4, 0, 3), (0, 4, 6, 3)):
        with pytest.raises(ValueError, match="empty"):
            request_images({"image": np.zeros(empty, np.uint8)})
    two_sizes = np.array([[_png(np.zeros((4, 4, 3), np.uint8))], [_png(np.zeros((5, 4, 3), np.uint8))]], dtype=object)
    with pytest.raises(ValueError, match="one size"):
        request_images({"image_bytes": two_sizes})


def test_response_tensors_downscale():
    scores, maps = np.array([1.0, 3.0], np.float32), np.ones((2, 16, 16), np.float32)
    out = response_tensors(scores, maps, (100, 60), threshold=2.0, map_downscale=4)
    assert out["score"].shape == (2, 1) and out["anomaly_map"].shape == (2, 25, 15)
    assert out["anomaly_map"].dtype == np.float32 and out["is_anomalous"].ravel().tolist() == [False, True]


class _FakeDetector:
    threshold = 0.5

    def score_batch(self, images):
        return np.arange(len(images), dtype=np.float32), np.zeros((len(images), 8, 8), np.float32)


def test_served_model_answers_each_request():
    """A bad request gets its error; the others of the same batch their own results."""
    good = {"image": np.zeros((2, 4, 4, 3), np.uint8)}
    answers = ServedModel(_FakeDetector()).run([good, {"image_bytes": np.array([[b"junk"]], dtype=object)}, good])
    assert isinstance(answers[1], ImageReadError)
    assert answers[0]["score"].ravel().tolist() == [0, 1] and answers[2]["score"].ravel().tolist() == [2, 3]
    assert answers[2]["anomaly_map"].shape == (2, 4, 4)


class _SmallSideDetector(_FakeDetector):
    """Refuses a batch holding an image below 8 px, as a detector refuses one below its patch grid."""

    def score_batch(self, images):
        if min(min(im.shape[:2]) for im in images) < 8:
            raise InputError("an image side is below the finest patch grid")
        return np.full(len(images), len(images), np.float32), np.zeros((len(images), 8, 8), np.float32)


def test_request_the_detector_refuses_fails_alone():
    """An image the detector refuses got every request of its dynamic batch an error; now only its own."""
    good, tiny = {"image": np.zeros((2, 16, 16, 3), np.uint8)}, {"image": np.zeros((1, 1, 1, 3), np.uint8)}
    answers = ServedModel(_SmallSideDetector()).run([good, tiny, good])
    assert isinstance(answers[1], InputError) and is_bad_request(answers[1])
    assert answers[0]["score"].ravel().tolist() == [2, 2] == answers[2]["score"].ravel().tolist()  # scored alone
    both = ServedModel(_SmallSideDetector()).run([good, good])
    assert both[0]["score"].ravel().tolist() == [4, 4]  # one call while nothing is refused
    empty = ServedModel(_SmallSideDetector()).run([{"image_bytes": np.zeros((0, 1), dtype=object)}, good])
    assert isinstance(empty[0], ValueError) and "'image_bytes' is empty" in str(empty[0])
    assert empty[1]["score"].ravel().tolist() == [2, 2]


def test_own_libpython_first():
    if python_library_dir() is None:
        with pytest.raises(RuntimeError, match="shared libpython"):
            with_own_libpython({})
        return
    env = with_own_libpython({"LD_LIBRARY_PATH": f"/x:{python_library_dir()}"})
    assert env["LD_LIBRARY_PATH"] == f"{python_library_dir()}:/x"


def test_repository_layout_and_versions(tmp_path):
    artifact = tmp_path / "art"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"category": "metal nut", "files": {}}))
    repo = tmp_path / "repo"
    with pytest.MonkeyPatch.context() as mp:  # a manifest-only artifact: skip the checksum reader
        mp.setattr("cpr_engine.triton_repo.writer.read_manifest", lambda folder: json.loads(
            (folder / "manifest.json").read_text()))
        assert write_repository([artifact, artifact], repo, max_batch_size=4) == [repo / "metal_nut" / "1",
                                                                                  repo / "metal_nut" / "2"]
        assert write_repository([artifact], repo) == [repo / "metal_nut" / "3"]
        assert write_repository([artifact], repo, force=True) == [repo / "metal_nut" / "1"]
    assert sorted(p.name for p in (repo / "metal_nut").iterdir()) == ["1", "config.pbtxt"]
    assert (repo / "metal_nut" / "1" / "artifact" / "manifest.json").is_file()
    assert "cpr_engine.triton_repo.python_model" in (repo / "metal_nut" / "1" / "model.py").read_text()
    config = render_config("metal_nut", max_batch_size=4, instances=3, map_downscale=2)
    for line in ('backend: "python"', "max_batch_size: 4", "count: 3", "TYPE_UINT8", "TYPE_STRING",
                 "dims: [-1, -1, 3]", 'string_value: "2"'):
        assert line in config


def test_start_retries_only_the_handshake_race():
    from cpr_engine.serve.app import HANDSHAKE_RACE, START_ATTEMPTS, retry_handshake_race

    calls = []

    def flaky(failures, message):
        def start():
            calls.append(1)
            if len(calls) <= failures:
                raise RuntimeError(message)
            return "server"
        return start

    assert retry_handshake_race(flaky(START_ATTEMPTS - 1, f"load failed: {HANDSHAKE_RACE} /x.sock")) == "server"
    assert len(calls) == START_ATTEMPTS
    calls.clear()
    with pytest.raises(RuntimeError, match="config file"):
        retry_handshake_race(flaky(START_ATTEMPTS, f"load failed: {HANDSHAKE_RACE} /x.sock"))
    assert len(calls) == START_ATTEMPTS
    calls.clear()
    with pytest.raises(RuntimeError, match="bad artifact"):
        retry_handshake_race(flaky(1, "bad artifact"))
    assert len(calls) == 1


def test_server_listens_on_this_machine_only_unless_told():
    """The default bind address is loopback; --host opens it (issue: a 0.0.0.0 default exposed it)."""
    from cpr_engine.cli.serve import build_parser
    from cpr_engine.serve.app import ServeOptions

    assert ServeOptions().host == "127.0.0.1"
    assert build_parser().parse_args(["art"]).host == "127.0.0.1"
    assert build_parser().parse_args(["art", "--host", "0.0.0.0"]).host == "0.0.0.0"
