"""The torch-free runtime: an exported artifact scored by ArtifactDetector equals the PyTorch model."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from cpr_engine import Detector
from cpr_engine.data import ImageReadError, read_image
from cpr_engine.errors import InputError
from cpr_engine.exporter import export_artifact
from cpr_engine.inputs import AnomalyDetector
from cpr_engine.contract import MANIFEST
from cpr_engine.runtime.artifact import ArtifactError
from cpr_engine.runtime.detector import ArtifactDetector
from tests.helpers.artifacts import edit_manifest
from tests.helpers.offsets import with_location_offset


pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.needs_native

# Score tolerances, relative: fp32 artifacts differ from PyTorch only by ONNX Runtime's float
# rounding; fp16 banks and histograms add half-precision rounding of every stored descriptor.
RTOL = {False: 1e-4, True: 2e-3}


@pytest.fixture(scope="module")
def test_images(demo_root):
    from pathlib import Path
    paths = sorted(Path(demo_root).glob("*/test/*/*.png"))
    return [read_image(p) for p in paths]


@pytest.fixture(scope="module")
def artifacts(object_detector, tiny_detector, tmp_path_factory):
    """{(name, fp16): (torch detector, artifact folder)} for an object model with its foreground on the map
    ("object") or on the image score only ("object_score", fp32) and a texture model."""
    root = tmp_path_factory.mktemp("rt")
    models = {f"object{suffix}": Detector.load(with_location_offset(object_detector, root / mode, mode), device="cpu")
              for suffix, mode in (("", "map"), ("_score", "score"))}
    models["texture"] = tiny_detector
    out = {}
    for name, fp16 in (("object", False), ("object", True), ("object_score", False), ("texture", False),
                       ("texture", True)):
        folder = root / f"{name}_{int(fp16)}"
        export_artifact(models[name], folder, fp16=fp16, trt="no")
        out[(name, fp16)] = (models[name], folder)
    return out


def _scores(preds):
    return np.array([p.score for p in preds])


@pytest.mark.parametrize("name,fp16", [("object", False), ("object", True), ("object_score", False),
                                       ("texture", False), ("texture", True)])
def test_artifact_scores_equal_pytorch(artifacts, test_images, name, fp16):
    det, folder = artifacts[(name, fp16)]
    runtime = Detector.load(folder)
    assert isinstance(runtime, ArtifactDetector) and runtime.network.name == "onnxruntime"
    assert runtime.threshold == pytest.approx(det.threshold)
    want, got = det.predict(test_images), runtime.predict(test_images, batch_size=3)
    np.testing.assert_allclose(_scores(got), _scores(want), rtol=RTOL[fp16])
    for g, w, image in zip(got, want, test_images):
        assert g.anomaly_map.shape == image.shape[:2] and g.anomaly_map.dtype == np.float32
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, rtol=RTOL[fp16], atol=RTOL[fp16] * w.anomaly_map.max())
        assert g.is_anomalous == w.is_anomalous or abs(w.score - det.threshold) < RTOL[fp16] * det.threshold


def test_foreground_on_the_score_only_and_format_4(artifacts, test_images, tmp_path):
    """The image-score-only artifact has the weighted artifact's scores and other maps; a format-4 artifact
    (no foreground_on_map) is read as the map weighted, as that format scored."""
    _, weighted = artifacts[("object", False)]
    _, score_only = artifacts[("object_score", False)]
    older = _copy(score_only, tmp_path / "format_4")
    edit_manifest(older, drop=("foreground_on_map",), format_version=4)
    want, got, older_got = (Detector.load(folder).predict(test_images) for folder in (weighted, score_only, older))
    np.testing.assert_allclose(_scores(got), _scores(want), rtol=1e-6)
    assert any(not np.allclose(g.anomaly_map, w.anomaly_map, rtol=1e-3) for g, w in zip(got, want))
    for o, w in zip(older_got, want):
        np.testing.assert_array_equal(o.anomaly_map, w.anomaly_map)
        assert o.score == w.score


def test_both_detector_classes_implement_the_protocol(artifacts, tiny_detector):
    runtime = Detector.load(artifacts[("texture", False)][1])
    for detector in (tiny_detector, runtime):
        assert isinstance(detector, AnomalyDetector), type(detector)
    assert (runtime.image_size, runtime.threshold) == (tiny_detector.image_size, pytest.approx(tiny_detector.threshold))
    assert not isinstance(object(), AnomalyDetector)


def test_inputs_paths_bgr_batches(artifacts, demo_root):
    _, folder = artifacts[("object", False)]
    runtime = ArtifactDetector.load(folder)
    path = f"{demo_root}/coffee/test/good/000.png"
    rgb = read_image(path)
    from_path = runtime.predict(path)
    assert from_path.score == pytest.approx(runtime.predict(rgb).score, rel=1e-6)
    assert runtime.predict(np.ascontiguousarray(rgb[:, :, ::-1]), color="BGR").score == pytest.approx(from_path.score,
                                                                                                        rel=1e-6)
    batch = runtime.predict(np.stack([rgb, rgb]))
    assert len(batch) == 2 and batch[0].score == pytest.approx(from_path.score, rel=1e-6)
    gray = runtime.predict(rgb[:, :, 0])  # grayscale converted, non-square crop too
    assert np.isfinite(gray.score)
    crop = runtime.predict(rgb[:50, :])
    assert crop.anomaly_map.shape == (50, rgb.shape[1])


def test_bad_inputs_name_the_problem(artifacts, tmp_path):
    _, folder = artifacts[("texture", False)]
    runtime = ArtifactDetector.load(folder)
    with pytest.raises(ImageReadError, match="channel count 5"):
        runtime.predict(np.zeros((32, 32, 5), np.uint8))
    bad = np.zeros((32, 32, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageReadError, match="NaN"):
        runtime.predict(bad)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageReadError, match="broken.png"):
        runtime.predict(broken)
    with pytest.raises(ValueError, match="color"):
        runtime.predict(np.zeros((32, 32, 3), np.uint8), color="HSV")
    with pytest.raises(ValueError, match="batch_size"):
        runtime.predict(np.zeros((32, 32, 3), np.uint8), batch_size=0)


def test_empty_special_and_oversized_inputs_get_no_verdict(artifacts, tmp_path, monkeypatch):
    """An empty path (it read the current folder), an empty batch (it returned []), a FIFO (reading it
    hung) or a device, and an array view larger than the pixel budget (it allocated terabytes)."""
    _, folder = artifacts[("texture", False)]
    runtime = ArtifactDetector.load(folder)
    image = np.full((40, 40, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "good.png"), image)
    monkeypatch.chdir(tmp_path)  # a folder holding an image: "" must not mean it
    with pytest.raises(InputError, match="the image path is empty"):
        runtime.predict("")
    with pytest.raises(InputError, match=re.escape("no images given (empty batch of shape (0, 40, 40, 3))")):
        runtime.predict(np.zeros((0, 40, 40, 3), np.uint8))
    os.mkfifo(tmp_path / "fifo.png")
    for special in (tmp_path / "fifo.png", "/dev/zero"):
        with pytest.raises(ImageReadError, match="not a regular file"):
            runtime.predict(special)
    huge = np.broadcast_to(image[:1, :1], (10**6, 10**6, 3))
    with pytest.raises(ImageReadError, match="image array too large: 1000000 x 1000000"):
        runtime.predict(huge)
    # a memoryview of an image is an image, not a sequence of rows
    assert runtime.predict(memoryview(image)).score == pytest.approx(runtime.predict(image).score)


def test_pil_images_are_read_as_files_are(artifacts, tmp_path):
    """A palette PIL image was scored on its palette indices (as a gray image); now on its colours."""
    from PIL import Image

    _, folder = artifacts[("texture", False)]
    runtime = ArtifactDetector.load(folder)
    rgb = np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(colors=16)
    assert palette.mode == "P"
    palette.save(tmp_path / "palette.png")
    from_file = runtime.predict(tmp_path / "palette.png").score
    assert runtime.predict(palette).score == pytest.approx(from_file)
    assert [p.score for p in runtime.predict([palette, palette.convert("RGB")])] == pytest.approx([from_file] * 2)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_artifacts_are_refused(artifacts, tmp_path):
    _, folder = artifacts[("texture", True)]
    tampered = _copy(folder, tmp_path / "tampered")
    data = bytearray((tampered / "network.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / "network.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for network.onnx"):
        Detector.load(tampered)

    newer = _copy(folder, tmp_path / "newer")
    manifest = json.loads((newer / MANIFEST).read_text())
    manifest["format_version"] = 99
    (newer / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        Detector.load(newer)

    missing = _copy(folder, tmp_path / "missing")
    (missing / "bank_fg.npy").unlink()
    with pytest.raises(ArtifactError, match="bank_fg.npy listed in the manifest is missing"):
        Detector.load(missing)

    with pytest.raises(ArtifactError, match="no manifest.json"):
        Detector.load(tmp_path)
    with pytest.raises(ArtifactError, match="no network.plan"):
        Detector.load(folder, backend="tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        Detector.load(folder, backend="openvino")
    with pytest.raises(TypeError, match="artifact folders only"):
        Detector.load(tmp_path / "model.pt", backend="onnxruntime")


def test_one_detector_shared_by_threads(artifacts, test_images):
    _, folder = artifacts[("object", False)]
    runtime = ArtifactDetector.load(folder)
    want = _scores(runtime.predict(test_images))
    results, errors = {}, []

    def worker(t):
        try:
            for _ in range(3):
                results.setdefault(t, []).append(_scores(runtime.predict(test_images, batch_size=2)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 4
    for runs in results.values():
        for scores in runs:
            np.testing.assert_array_equal(scores, want)


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
"""


def test_runtime_runs_without_torch(artifacts, demo_root, tmp_path):
    """Detector.load(artifact).predict and cpr-predict on an artifact, in a process where importing torch fails."""
    det, folder = artifacts[("object", True)]
    path = f"{demo_root}/coffee/test/good/000.png"
    code = BLOCK_TORCH + f"""
from cpr_engine import Detector
from cpr_engine.cli import predict
det = Detector.load({str(folder)!r})
pred = det.predict({path!r})
predict.main([{path!r}, "--model", {str(folder)!r}, "--out", {str(tmp_path)!r}, "--quiet"])
assert "torch" not in sys.modules
print("score", pred.score, pred.anomaly_map.shape, pred.is_anomalous)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    want = det.predict(path).score
    score_line = next(line for line in run.stdout.splitlines() if line.startswith("score"))
    assert float(score_line.split()[1]) == pytest.approx(want, rel=RTOL[True])
    cli_line = next(line for line in run.stdout.splitlines() if line.startswith(path))
    assert float(cli_line.split(",")[1]) == pytest.approx(want, rel=RTOL[True])
    assert (tmp_path / "000.png_overlay.png").is_file() and (tmp_path / "predictions.csv").is_file()
