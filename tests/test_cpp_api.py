"""The C++ example (build/cpp/inspect_folder, built by scripts/build_cpp.sh) against the Python Detector.

Skipped when the binary is absent, failed instead when CPR_REQUIRE_CPP=1 (CI). The C++ runtime
reads the artifact's network_opencv.onnx and centers.npy (written by cpr-export).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.helpers.artifacts import edit_manifest, misshapen_memory_and_offset, replace_array
from tests.helpers.offsets import with_location_offset

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

BINARY = Path(__file__).resolve().parents[1] / "build" / "cpp" / "inspect_folder"
# |C++ - PyTorch| / score. fp32: same kernels, the network in OpenCV DNN instead of PyTorch (measured
# ~1e-6). fp16: the banks and histograms are rounded to float16 (measured ~2e-4).
RTOL = {"fp32": 1e-3, "fp16": 5e-3}


@pytest.fixture(scope="module")
def binary():
    if not BINARY.is_file():
        reason = f"{BINARY} not built (apt-get install libopencv-dev nlohmann-json3-dev libssl-dev libopenblas-dev; bash scripts/build_cpp.sh)"
        if os.environ.get("CPR_REQUIRE_CPP") == "1":
            pytest.fail(f"CPR_REQUIRE_CPP=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return BINARY


@pytest.fixture(scope="module")
def model_paths(object_detector, tmp_path_factory):
    """{foreground mode: model.pt}: the tiny object model of conftest, saved with a non-uniform location
    offset and its foreground on the map ("map") or on the image score only ("score")."""
    root = tmp_path_factory.mktemp("cpp")
    return {mode: with_location_offset(object_detector, root / mode, mode) for mode in ("map", "score")}


@pytest.fixture(scope="module")
def images(demo_root, tmp_path_factory):
    """Good and defective test photos, a non-square crop and a grayscale PNG."""
    folder = tmp_path_factory.mktemp("cpp_images")
    tests = sorted(Path(demo_root, "coffee", "test").glob("*/*.png"))
    for path in tests:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    photo = cv2.imread(str(tests[-1]))
    cv2.imwrite(str(folder / "wide_crop.png"), photo[10:82, :])
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    return folder


@pytest.fixture(scope="module")
def artifacts(model_paths, tmp_path_factory):
    """{kind: artifact}: "fp32", "fp16" of the "map" model, "fp32_score" of the "score" model."""
    from cpr_engine import Detector
    from cpr_engine.exporter import export_artifact

    root = tmp_path_factory.mktemp("cpp_artifacts")
    out = {}
    for name, fp16, mode in (("fp32", False, "map"), ("fp16", True, "map"), ("fp32_score", False, "score")):
        det = Detector.load(model_paths[mode], device="cpu")
        out[name] = Path(export_artifact(det, root / name, fp16=fp16, trt="no")["artifact"])
    return out


def run(binary, artifact, images, out):
    return subprocess.run([str(binary), str(artifact), str(images), str(out)], capture_output=True, text=True,
                          timeout=120)


def parse(stdout: str) -> dict:
    """{file: (score, verdict)} from the example's output lines."""
    rows = [line.split("\t") for line in stdout.splitlines() if not line.startswith("#")]
    return {name: (float(score), verdict) for name, score, verdict in rows}


@pytest.fixture(scope="module")
def python_predictions(model_paths, images):
    """{foreground mode: ({file: Prediction}, threshold)} of the Python Detector."""
    from cpr_engine import Detector
    from cpr_engine.data import read_image

    files = sorted(images.iterdir())
    out = {}
    for mode, path in model_paths.items():
        det = Detector.load(path, device="cpu")
        out[mode] = {p.name: pred for p, pred in zip(files, det.predict([read_image(p) for p in files]))}, det.threshold
    return out


@pytest.mark.parametrize("kind", ["fp32", "fp16", "fp32_score"])
def test_scores_match_python(binary, artifacts, images, python_predictions, tmp_path, kind):
    from cpr_engine.data import read_image
    from cpr_engine.overlay import heatmap_overlay

    result = run(binary, artifacts[kind], images, tmp_path / "heat")
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    mode = "score" if kind.endswith("_score") else "map"
    expected, threshold = python_predictions[mode]
    others = python_predictions["map" if mode == "score" else "score"][0]
    normal = tuple(json.loads((artifacts[kind] / "manifest.json").read_text())["pixel_normal"])
    rtol = RTOL[kind.split("_")[0]]
    assert set(got) == set(expected)
    assert "images/s" in result.stdout.splitlines()[-1]
    closer_to_own_map = 0
    for name, (score, verdict) in got.items():
        ref = expected[name].score
        assert score == pytest.approx(ref, rel=rtol), name
        if abs(ref - threshold) > rtol * abs(threshold):  # a verdict can only flip inside the tolerance
            assert verdict == ("anomalous" if expected[name].is_anomalous else "good"), name
        heat = cv2.imread(str(tmp_path / "heat" / f"{Path(name).stem}.png"))
        assert heat is not None and heat.shape[:2] == expected[name].anomaly_map.shape, name
        # the heat map draws this mode's map (weighted or not by the foreground), as Python draws it
        image = read_image(images / name)
        own, other = (heatmap_overlay(image, p.anomaly_map, normal)[..., ::-1].astype(int)
                      for p in (expected[name], others[name]))
        assert (abs(heat.astype(int) - own) > 3).mean() < 0.01, name
        closer_to_own_map += int(abs(heat - own).mean() < abs(heat - other).mean())
    assert closer_to_own_map >= len(got) - 1, "the two foreground modes draw the same maps: nothing is tested"


def _broken_copy(artifact, tmp_path):
    return Path(shutil.copytree(artifact, tmp_path / "broken"))


def _load_error(binary, artifact, images, tmp_path) -> str:
    result = run(binary, artifact, images, tmp_path / "heat")
    assert result.returncode == 2 and not result.stdout.strip(), (result.stdout, result.stderr)
    return result.stderr


def test_tampered_file_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    data = bytearray((art / "bank_4.npy").read_bytes())
    data[-1] ^= 0xFF
    (art / "bank_4.npy").write_bytes(bytes(data))
    assert "checksum mismatch for bank_4.npy" in _load_error(binary, art, images, tmp_path)


def test_tampered_or_unsigned_manifest_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, resign=False, top_t=1)
    assert "checksum mismatch for manifest.json" in _load_error(binary, art, images, tmp_path)
    (art / "manifest.sha256").unlink()
    assert "has no manifest.sha256" in _load_error(binary, art, images, tmp_path)


def test_unusable_threshold_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, threshold=-1.0)
    assert "setting 'threshold' = -1.0 is not allowed: must be a finite number >= 0" in _load_error(
        binary, art, images, tmp_path)
    edit_manifest(art, threshold=float("nan"))  # Python writes NaN, which is not JSON: refused as unreadable
    assert "manifest.json: unreadable manifest" in _load_error(binary, art, images, tmp_path)


# settings out of range, as test_fail_closed.py gives them to the Python runtime; a callable gets the manifest
BAD_SETTINGS = [
    ("windows", [2, 1]),
    ("windows", [3]),
    ("windows", [3.0, 1]),
    ("windows", lambda m: [2 * (m["image_size"] // m["strides"][0]) + 1, 1]),  # wider than twice the fine map
    ("top_k", 0),
    ("top_k", 2.5),
    ("top_k", True),
    ("top_k", lambda m: m["n_train"] + 1),
    ("top_t", 0),
    ("top_t", "5"),
    ("top_t", lambda m: m["image_size"] ** 2 + 1),
    ("n_train", 0),
    ("image_size", 0),
    ("strides", [16, 8]),
    ("grid", 0),
    ("grid", lambda m: m["image_size"] // m["strides"][0] + 1),  # more blocks per side than fine patches
    ("blur_sigma", -4),
    ("blur_sigma", 1e6),  # a Gaussian of 8 million taps
    ("blur_sigma", "4"),
    ("pixel_normal", [0.0, 1e300]),  # would lift the threshold's bound: everything good
    ("pixel_normal", [1.0, 0.5]),
    ("pixel_normal", [0.5]),
    ("threshold", lambda m: m["top_t"] * m["pixel_normal"][1] * 1.01 + 1),  # above what training allows
    ("threshold", "0.5"),
]


@pytest.mark.parametrize("key,value", BAD_SETTINGS, ids=[f"{k}={v!r}" if not callable(v) else f"{k}=over"
                                                         for k, v in BAD_SETTINGS])
def test_setting_out_of_range_is_refused_as_python_refuses_it(binary, artifacts, images, tmp_path, key, value):
    from cpr_engine.runtime.artifact import ArtifactError, check_settings

    art = _broken_copy(artifacts["fp32"], tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    edit_manifest(art, **{key: value(manifest) if callable(value) else value})
    with pytest.raises(ArtifactError, match=f"manifest setting '{key}' = .* is not allowed: must be") as python:
        check_settings(str(art), json.loads((art / "manifest.json").read_text()))
    assert f"error: cannot load the artifact: {python.value}\n" in _load_error(binary, art, images, tmp_path)


@pytest.mark.parametrize("key", ["use_foreground", "foreground_on_map"])
def test_foreground_setting_that_is_not_a_boolean_is_refused(binary, artifacts, images, tmp_path, key):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, **{key: 1})
    error = _load_error(binary, art, images, tmp_path)
    assert f"setting '{key}' missing or invalid" in error and error.count("\n") == 1


def test_format_4_artifact_weights_the_map(binary, artifacts, images, tmp_path):
    """A format-4 artifact has no foreground_on_map: read as true (the map and score weighted, as it scored)."""
    art = _broken_copy(artifacts["fp32_score"], tmp_path)
    edit_manifest(art, drop=("foreground_on_map",), format_version=4)
    older, weighted, score_only = (run(binary, folder, images, tmp_path / name) for folder, name in (
        (art, "older"), (artifacts["fp32"], "weighted"), (artifacts["fp32_score"], "score_only")))
    assert older.returncode == weighted.returncode == score_only.returncode == 0, older.stderr
    assert parse(older.stdout) == parse(weighted.stdout)
    for name in parse(older.stdout):  # same scores as the score-only artifact, other maps
        assert parse(older.stdout)[name][0] == pytest.approx(parse(score_only.stdout)[name][0], rel=1e-6)
    heat = [cv2.imread(str(tmp_path / kind / "gray.png")).astype(int) for kind in ("older", "weighted", "score_only")]
    assert (heat[0] == heat[1]).all() and (heat[0] != heat[2]).any()


def test_newer_format_version_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, format_version=99)
    assert "format version 99" in _load_error(binary, art, images, tmp_path)


def test_other_format_and_missing_manifest_are_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, format="something-else")
    assert "format tag 'cpr-engine-artifact' missing" in _load_error(binary, art, images, tmp_path)
    (art / "manifest.json").unlink()
    assert "no manifest.json" in _load_error(binary, art, images, tmp_path)


def test_missing_file_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp16"], tmp_path)
    (art / "bank_fg.npy").unlink()
    assert "file bank_fg.npy listed in the manifest is missing" in _load_error(binary, art, images, tmp_path)


def test_wrong_image_size_is_refused(binary, artifacts, images, tmp_path):
    art = _broken_copy(artifacts["fp32"], tmp_path)
    edit_manifest(art, image_size=128)
    side = 128 // json.loads((art / "manifest.json").read_text())["strides"][0]
    error = _load_error(binary, art, images, tmp_path)
    assert "bank_4.npy: bank_4 has shape" in error and "expected" in error and f"{side}, {side})" in error


@pytest.mark.parametrize("name", ["memory_8", "location_offset"])
def test_misshapen_memory_or_offset_is_refused(binary, artifacts, images, tmp_path, name):
    """A memory or location offset of the wrong shape, listed and signed (a bad exporter): exit 2 with
    a line naming the file, no verdict."""
    art = _broken_copy(artifacts["fp32"], tmp_path)
    replace_array(art, name, misshapen_memory_and_offset(art)[name])
    error = _load_error(binary, art, images, tmp_path)
    assert f"{name}.npy" in error and "shape" in error, error


def test_corrupt_image_is_reported_and_others_scored(binary, artifacts, images, tmp_path):
    folder = Path(shutil.copytree(images, tmp_path / "images"))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "noise.png").write_bytes(bytes(range(256)) * 4)
    result = run(binary, artifacts["fp32"], folder, tmp_path / "heat")
    assert result.returncode == 1
    assert "broken.png: truncated or corrupt PNG: no IEND chunk" in result.stderr
    assert "noise.png: cannot read or decode the image" in result.stderr
    assert set(parse(result.stdout)) == {p.name for p in images.iterdir()}


def test_image_smaller_than_the_patch_grid_is_refused_as_python_refuses_it(binary, artifacts, images, tmp_path):
    """An image with a side below the finest patch grid gets no verdict, in C++ as in Python."""
    from cpr_engine import Detector
    from cpr_engine.errors import InputError

    folder = Path(shutil.copytree(images, tmp_path / "images"))
    cv2.imwrite(str(folder / "strip.png"), np.full((3, 40, 3), 128, np.uint8))
    result = run(binary, artifacts["fp32"], folder, tmp_path / "heat")
    assert result.returncode == 1
    assert "strip.png" in result.stderr and "40 x 3 pixels: a side below" in result.stderr
    assert set(parse(result.stdout)) == {p.name for p in images.iterdir()}
    with pytest.raises(InputError, match="image 0 is 40 x 3 pixels: a side below"):
        Detector.load(artifacts["fp32"]).predict(np.full((3, 40, 3), 128, np.uint8))


@pytest.mark.parametrize("kind", ["fp32", "fp16"])
@pytest.mark.parametrize("which", ["both", "coarse"])
def test_whole_map_windows_match_the_python_runtime(binary, artifacts, images, tmp_path, kind, which):
    """Windows covering the map (the global search chosen on most real data) run as matrix products in
    both runtimes; the C++ scores equal the torch-free Python runtime's on the same edited artifact."""
    from cpr_engine.data import read_image
    from cpr_engine.runtime.detector import ArtifactDetector

    art = _broken_copy(artifacts[kind], tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    sides = [manifest["image_size"] // s for s in manifest["strides"]]
    windows = [2 * side - 1 for side in sides] if which == "both" else [3, 2 * sides[1] - 1]
    edit_manifest(art, windows=windows)
    result = run(binary, art, images, tmp_path / "heat")
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    runtime = ArtifactDetector.load(art)
    assert list(runtime.settings.windows) == windows
    files = sorted(images.iterdir())
    for path, pred in zip(files, runtime.predict([read_image(p) for p in files])):
        assert got[path.name][0] == pytest.approx(pred.score, rel=RTOL[kind]), path.name


def test_scales_with_different_descriptor_widths(binary, demo_root, images, tmp_path):
    """Raw taps keep each tap's width (here 40 and 64): banks, graph outputs and the search differ per
    scale in both runtimes, and the C++ scores equal the Python ones."""
    from cpr_engine import Detector
    from cpr_engine.data import read_image
    from cpr_engine.exporter import export_artifact
    from tests.conftest import TINY

    options = dict(TINY, descriptor="raw", descriptor_dim=64)
    det = Detector(options.pop("variant"), device="cpu", **options).fit(f"{demo_root}/coffee")
    assert det.model.descriptor_dims == (40, 64)
    art = Path(export_artifact(det, tmp_path / "artifact", trt="no")["artifact"])
    assert json.loads((art / "manifest.json").read_text())["descriptor_dims"] == [40, 64]
    result = run(binary, art, images, tmp_path / "heat")
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    files = sorted(images.iterdir())
    for path, pred in zip(files, det.predict([read_image(p) for p in files])):
        assert got[path.name][0] == pytest.approx(pred.score, rel=RTOL["fp32"]), path.name


def test_example_never_writes_over_the_users_files(binary, artifacts, images, tmp_path):
    """OUT_DIR = the image folder wrote heat maps over the images; a user's file in OUT_DIR, two images
    with one stem and an empty image folder are refused (exit 2, one line) before anything is written."""
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    into_images = run(binary, artifacts["fp32"], images, images)
    assert into_images.returncode == 2 and "holds files that inspect_folder did not write" in into_images.stderr
    assert into_images.stderr.count("\n") == 1 and not into_images.stdout
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before
    pair = tmp_path / "pair"
    pair.mkdir()
    for ext in (".png", ".jpg"):
        shutil.copy(next(images.glob("*.png")), pair / f"a{ext}")
    same_stem = run(binary, artifacts["fp32"], pair, tmp_path / "out_pair")
    assert same_stem.returncode == 2 and "a.jpg and a.png would write the same heat map" in same_stem.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = run(binary, artifacts["fp32"], empty, tmp_path / "out_empty")
    assert none.returncode == 2 and "no images in" in none.stderr and not (tmp_path / "out_empty").exists()
    out = tmp_path / "out"
    assert run(binary, artifacts["fp32"], images, out).returncode == 0
    assert run(binary, artifacts["fp32"], images, out).returncode == 0  # its own folder: written again
    assert (out / ".cpr-inspect").is_file()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_non_finite_array_is_refused_as_python_refuses_it(binary, artifacts, images, tmp_path, dtype):
    """A NaN in a bank (re-signed) was scored by the C++ runtime; Python refused it."""
    from cpr_engine import Detector
    from cpr_engine.runtime.artifact import ArtifactError

    art = _broken_copy(artifacts["fp16" if dtype == "float16" else "fp32"], tmp_path)
    bank = np.load(art / "bank_8.npy")
    assert str(bank.dtype) == dtype
    bank[2, 0, 1, 1] = np.nan
    replace_array(art, "bank_8", bank)
    with pytest.raises(ArtifactError) as python:
        Detector.load(art)
    assert "bank_8.npy holds NaN or inf (training image 2)" in str(python.value)
    assert f"error: cannot load the artifact: {python.value}\n" in _load_error(binary, art, images, tmp_path)


def test_special_files_in_an_artifact_are_refused_without_reading_them(binary, artifacts, images, tmp_path):
    """A FIFO as manifest.json (opening it blocked) and a bank linked to /dev/zero (hashing it never ended)."""
    art = _broken_copy(artifacts["fp32"], tmp_path)
    (art / "bank_4.npy").unlink()
    (art / "bank_4.npy").symlink_to("/dev/zero")
    assert "file bank_4.npy listed in the manifest is missing" in _load_error(binary, art, images, tmp_path)
    (art / "manifest.json").unlink()
    os.mkfifo(art / "manifest.json")
    assert "is not a cpr-engine artifact: no manifest.json" in _load_error(binary, art, images, tmp_path)


def test_example_gives_no_verdict_on_an_image_cut_short(binary, artifacts, images, tmp_path):
    """A JPEG or PNG cut in half decodes in libjpeg / libpng with a warning and gray rows; it was scored."""
    cut = tmp_path / "cut"
    cut.mkdir()
    photo = cv2.imread(str(next(images.glob("*.png"))))
    for ext in (".jpg", ".png"):
        data = cv2.imencode(ext, photo)[1].tobytes()
        (cut / f"half_{ext[1:]}{ext}").write_bytes(data[: len(data) // 2])
        (cut / f"whole_{ext[1:]}{ext}").write_bytes(data)
    result = run(binary, artifacts["fp32"], cut, tmp_path / "out")
    assert result.returncode == 1 and sorted(parse(result.stdout)) == ["whole_jpg.jpg", "whole_png.png"]
    assert "half_jpg.jpg: truncated JPEG: no end-of-image marker after the last scan" in result.stderr
    assert "half_png.png: truncated or corrupt PNG: no IEND chunk at the end of the file" in result.stderr
    assert result.stderr.count("\n") == 2
