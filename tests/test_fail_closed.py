"""Fail closed: a part is never passed as good because a number was NaN.

Verdicts (Detector, ArtifactDetector, the serving codec) refuse non-finite scores, thresholds and
maps; artifacts and model files are checked at load: settings in range, manifest.json covered by
manifest.sha256, model.pt tensors by their digest, no NaN/inf in banks.
"""
import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cpr_engine import Detector
from cpr_engine.data import read_image
from cpr_engine.errors import CPRError, InputError, ModelFileError, NonFiniteScoreError
from cpr_engine.inputs import verdict
from cpr_engine.contract import MANIFEST, MANIFEST_DIGEST
from cpr_engine.runtime.artifact import ArtifactError, add_file, read_manifest
from tests.helpers.artifacts import edit_manifest, misshapen_memory_and_offset, replace_array


@pytest.fixture(scope="module")
def image(demo_root):
    return read_image(f"{demo_root}/grass/test/good/000.png")


@pytest.fixture(scope="module")
def artifact(tiny_detector, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from cpr_engine.exporter import export_artifact

    out = tmp_path_factory.mktemp("fail_closed") / "artifact"
    export_artifact(tiny_detector, out, trt="no")
    return out


@pytest.fixture(scope="module")
def model_file(tiny_detector, tmp_path_factory):
    return tiny_detector.save(tmp_path_factory.mktemp("fail_closed_model") / "model.pt")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# --- the verdict -----------------------------------------------------------------------------------

def test_threshold_from_good_scores_is_robust_to_one_unusual_image():
    from cpr_engine.inputs import good_score_threshold

    rng = np.random.default_rng(0)
    good = rng.normal(100.0, 10.0, size=200)
    typical, _ = good_score_threshold(good, "scores", bound=1e9)
    with_outlier, line = good_score_threshold(np.append(good, 500.0), "scores", bound=1e9)
    assert 125 < typical < 140 and abs(with_outlier - typical) < 1.0  # the 99.9th percentile of N(100, 10): 130.9
    assert line == "median + 3.09 x 1.4826 MAD of 201 scores"
    assert good_score_threshold(good, "scores", bound=120.0) == (120.0, "top_t x the largest good pixel score "
                                                                 "(below median + 3.09 x 1.4826 MAD of 200 scores)")
    assert good_score_threshold(good[:9], "scores", bound=1e9) == (good[:9].max(), "max of 9 scores")  # too few
    assert good_score_threshold(np.full(12, 3.0), "scores", bound=1e9) == (3.0, "max of 12 scores")  # no spread
    # the bound holds for the max rule too (a model file's check refuses a larger threshold at load)
    assert good_score_threshold([50.0, 700.0], "scores", bound=88.0) == (
        88.0, "top_t x the largest good pixel score (below max of 2 scores)")


def test_threshold_from_no_or_non_finite_scores_is_refused():
    from cpr_engine.inputs import good_score_threshold

    with pytest.raises(InputError, match="no leave-one-out scores"):
        good_score_threshold([], "leave-one-out scores", bound=1.0)
    with pytest.raises(NonFiniteScoreError, match="scores has 1 NaN and 0 inf of 12 values; no threshold set"):
        good_score_threshold([1.0] * 11 + [float("nan")], "scores", bound=1.0)


def test_verdict_is_score_above_threshold_and_refuses_non_finite():
    assert verdict(np.float32(2.0), 1.0, np.zeros((4, 4), np.float32)) is True
    assert verdict(1.0, 1.0) is False
    for score, threshold, amap, what in [
        (float("nan"), 1.0, None, "score is nan"),
        (np.float32("inf"), 1.0, None, "score is inf"),
        (0.5, float("nan"), None, "threshold is nan"),
        (0.5, None, None, "threshold None"),
        (0.5, 1.0, np.array([[0.0, np.nan], [np.inf, 0.0]], np.float32), "anomaly map has 1 NaN and 1 inf"),
    ]:
        with pytest.raises(NonFiniteScoreError, match="image 3") as info:
            verdict(score, threshold, amap, index=3)
        assert what in str(info.value) and isinstance(info.value, CPRError)


def _nan_scoring(score_batch, which):
    """Wrap a score_batch: make the score or one map pixel of the second image NaN."""
    def scored(images):
        scores, maps = score_batch(images)
        scores, maps = np.array(scores), np.array(maps)
        if len(images) > 1:
            if which == "score":
                scores[1] = np.nan
            else:
                maps[1, 0, 0] = np.nan
        return scores, maps
    return scored


@pytest.mark.parametrize("which", ["score", "map"])
def test_detector_nan_score_or_map_is_never_good(tiny_detector, image, monkeypatch, which):
    monkeypatch.setattr(tiny_detector, "score_batch", _nan_scoring(tiny_detector.score_batch, which))
    with pytest.raises(NonFiniteScoreError, match=f"image 1: {'score is nan' if which == 'score' else 'anomaly map'}"):
        tiny_detector.predict([image, image, image])


def test_detector_nan_threshold_is_never_good(tiny_detector, image, monkeypatch):
    monkeypatch.setitem(tiny_detector.meta, "threshold", float("nan"))
    with pytest.raises(NonFiniteScoreError, match="image 0: threshold is nan"):
        tiny_detector.predict(image)


@pytest.mark.parametrize("buffer", ["bank_4", "memory_4"])
def test_detector_nan_bank_buffer_is_never_good(tiny_detector, image, buffer):
    """A NaN in a loaded bank or memory (tampered buffer) poisons the score: an error, not a 'good'
    verdict (the other search must not hide it)."""
    bank = getattr(tiny_detector.model, buffer)
    saved = bank.clone()
    try:
        with torch.no_grad():
            bank.fill_(float("nan"))
        with pytest.raises(NonFiniteScoreError, match="image 0"):
            tiny_detector.predict(image)
    finally:
        with torch.no_grad():
            bank.copy_(saved)


@pytest.mark.parametrize("name", ["memory_8", "location_offset"])
def test_artifact_with_a_misshapen_memory_or_offset_is_refused(artifact, tmp_path, name):
    """A memory or location offset of the wrong shape, listed and signed (a bad exporter): refused on
    load with a line naming the file, never scored."""
    folder = _copy(artifact, tmp_path / "art")
    replace_array(folder, name, misshapen_memory_and_offset(folder)[name])
    with pytest.raises(ArtifactError, match=f"{name}.npy"):
        Detector.load(folder)


@pytest.mark.needs_native
@pytest.mark.parametrize("which", ["score", "map"])
def test_artifact_nan_score_or_map_is_never_good(artifact, image, monkeypatch, which):
    runtime = Detector.load(artifact)
    monkeypatch.setattr(runtime, "score_batch", _nan_scoring(runtime.score_batch, which))
    with pytest.raises(NonFiniteScoreError, match="image 1"):
        runtime.predict([image, image], batch_size=2)


@pytest.mark.needs_native
def test_artifact_nan_threshold_and_banks_are_never_good(artifact, image, monkeypatch):
    runtime = Detector.load(artifact)
    assert runtime.predict(image).is_anomalous in (True, False)
    monkeypatch.setattr(runtime, "settings", dataclasses.replace(runtime.settings, threshold=float("nan")))
    with pytest.raises(NonFiniteScoreError, match="image 0: threshold is nan"):
        runtime.predict(image)
    monkeypatch.undo()
    runtime.banks = [np.full_like(b, np.nan) for b in runtime.banks]  # tampered after load
    with pytest.raises(NonFiniteScoreError, match="image 0"):
        runtime.predict(image)


def test_served_answers_refuse_nan(monkeypatch):
    from cpr_engine.serve.codec import ServedModel, response_tensors

    maps = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(NonFiniteScoreError, match="image 1: score is nan"):
        response_tensors(np.array([1.0, np.nan], np.float32), maps, (8, 8), threshold=2.0, map_downscale=1)

    class Fake:
        threshold = 2.0

        def score_batch(self, images):
            scores = np.array([3.0, np.nan], np.float32)[:len(images)]
            return scores, np.zeros((len(images), 8, 8), np.float32)

    good, bad = ServedModel(Fake()).run([{"image": np.zeros((1, 8, 8, 3), np.uint8)},
                                         {"image": np.zeros((1, 8, 8, 3), np.uint8)}])
    assert good["is_anomalous"].tolist() == [[True]]
    assert isinstance(bad, NonFiniteScoreError)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_float_image_with_non_finite_values_is_input_error(tiny_detector, value):
    bad = np.full((32, 32, 3), 0.5, np.float32)
    bad[3, 4, 1] = value
    with pytest.raises(InputError, match="non-finite"):
        tiny_detector.predict(bad)
    with pytest.raises(InputError, match="non-finite"):
        tiny_detector.predict([np.zeros((32, 32, 3), np.uint8), bad])


# --- artifact settings and manifest integrity -------------------------------------------------------

BAD_SETTINGS = [
    ("threshold", float("nan")),
    ("threshold", float("inf")),
    ("threshold", -1.0),
    ("threshold", 1e9),
    ("threshold", "0.5"),
    ("windows", [99, 99]),
    ("windows", [2, 1]),
    ("windows", [3]),
    ("top_k", 0),
    ("top_k", 1000),
    ("top_k", 2.5),
    ("top_t", 0),
    ("top_t", 64 * 64 + 1),
    ("blur_sigma", -4),
    ("blur_sigma", float("nan")),
    ("blur_sigma", 1e6),  # a Gaussian of 8 million taps: killed for memory
    ("grid", 1000),  # 10^6 histogram blocks per image
    ("pixel_normal", [0.0, 1e300]),  # lifts the threshold's bound: everything good
    ("image_size", None),  # null skipped the checks, then a TypeError at load
    ("strides", None),
    ("use_foreground", "false"),
    ("foreground_on_map", 1),
    ("variant", "nope"),
    ("image_size", 72),
    ("image_size", 0),
    ("strides", [16, 8]),
    ("kept_blocks", 0),
    ("pixel_normal", [0.0, float("nan")]),
    ("bank_dtype", "int8"),
    ("descriptor_dims", [0, 1]),
    ("descriptor_dims", 16),
]


@pytest.mark.needs_native
@pytest.mark.parametrize("key,value", BAD_SETTINGS, ids=[f"{k}={v!r}" for k, v in BAD_SETTINGS])
def test_bad_manifest_setting_is_refused(artifact, tmp_path, key, value):
    folder = _copy(artifact, tmp_path / "bad")
    edit_manifest(folder, **{key: value})
    with pytest.raises(ArtifactError, match=f"'{key}'") as info:
        Detector.load(folder)
    message = str(info.value)
    assert str(folder) in message and "must be" in message and "\n" not in message
    with pytest.raises(ArtifactError, match=f"'{key}'"):
        read_manifest(folder)  # every reader of the manifest checks the settings


@pytest.mark.needs_native
@pytest.mark.parametrize("key,value", [("descriptor_dims", [7, 7]), ("n_train", 5), ("n_clusters", 3),
                                       ("bank_dtype", "float16")])
def test_setting_that_does_not_fit_the_arrays_is_refused(artifact, tmp_path, key, value):
    folder = _copy(artifact, tmp_path / "bad")
    edit_manifest(folder, **{key: value})
    with pytest.raises(ArtifactError, match=key):  # n_clusters: centers.npy has another number of rows
        Detector.load(folder)


@pytest.mark.needs_native
def test_nan_in_an_artifact_bank_is_refused(artifact, tmp_path):
    from cpr_engine.runtime.artifact import sha256_of

    folder = _copy(artifact, tmp_path / "nan_bank")
    bank = np.load(folder / "bank_8.npy")
    bank[2, 0, 1, 1] = np.nan
    np.save(folder / "bank_8.npy", bank)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["bank_8.npy"]["sha256"] = sha256_of(folder / "bank_8.npy")
    edit_manifest(folder, files=manifest["files"])
    with pytest.raises(ArtifactError, match="bank_8.npy holds NaN or inf \\(training image 2\\)"):
        Detector.load(folder)


@pytest.mark.needs_native
def test_valid_artifact_has_manifest_digest_and_loads(artifact):
    data = (artifact / MANIFEST).read_bytes()
    assert (artifact / MANIFEST_DIGEST).read_text().split()[0] == hashlib.sha256(data).hexdigest()
    assert MANIFEST_DIGEST not in json.loads(data)["files"]
    Detector.load(artifact)


@pytest.mark.needs_native
def test_manifest_edited_by_one_byte_is_refused(artifact, tmp_path):
    folder = _copy(artifact, tmp_path / "edited")
    data = bytearray((folder / MANIFEST).read_bytes())
    i = data.index(b'"category": "grass"') + len(b'"category": "g')
    data[i] = ord("l")  # still valid JSON, still a valid setting: only the digest tells
    (folder / MANIFEST).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for manifest.json"):
        Detector.load(folder)
    with pytest.raises(ArtifactError, match="checksum mismatch for manifest.json"):
        read_manifest(folder)
    assert read_manifest(folder, verify=False)["category"] == "glass"  # verify=False skips all checksums


@pytest.mark.needs_native
def test_missing_or_edited_manifest_digest_is_refused(artifact, tmp_path):
    folder = _copy(artifact, tmp_path / "no_digest")
    (folder / MANIFEST_DIGEST).unlink()
    with pytest.raises(ArtifactError, match="has no manifest.sha256 \\(written by an older engine or tampered\\)"):
        Detector.load(folder)
    (folder / MANIFEST_DIGEST).write_text("0" * 64 + "  manifest.json\n")
    with pytest.raises(ArtifactError, match="checksum mismatch for manifest.json"):
        Detector.load(folder)
    edit_manifest(folder, threshold=float("nan"), resign=False)
    with pytest.raises(ArtifactError, match="checksum mismatch for manifest.json"):
        Detector.load(folder)


def test_add_file_rewrites_manifest_digest(artifact, tmp_path):
    folder = _copy(artifact, tmp_path / "with_plan")
    plan = tmp_path / "fake.plan"
    plan.write_bytes(b"engine bytes")
    add_file(folder, "network.plan", plan)
    assert read_manifest(folder)["files"]["network.plan"]["bytes"] == 12
    with pytest.raises(ArtifactError, match="cannot add a file named"):
        add_file(folder, MANIFEST_DIGEST, plan)


# --- model.pt ---------------------------------------------------------------------------------------

def _resave(src, dst, edit, digest=True):
    """Load model.pt's payload, edit it, save it to ``dst``; ``digest``: recompute the tensor digest."""
    from cpr_engine.detector import DIGEST_SCHEME, tensors_sha256

    payload = torch.load(src, weights_only=True)
    edit(payload)
    if digest:
        payload["integrity"] = json.dumps({"tensors_sha256": tensors_sha256(payload["state_dict"]),
                                           "scheme": DIGEST_SCHEME})
    torch.save(payload, dst)
    return dst


def _load_error(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        Detector.load(path, device="cpu")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_model_file_has_digest_and_loads(model_file, tiny_detector):
    from cpr_engine.detector import tensors_sha256

    payload = torch.load(model_file, weights_only=True)
    assert json.loads(payload["integrity"])["tensors_sha256"] == tensors_sha256(payload["state_dict"])
    assert Detector.load(model_file, device="cpu").threshold == tiny_detector.threshold


def test_model_nan_in_bank_is_refused(model_file, tmp_path):
    def edit(p):
        p["state_dict"]["bank_4"][0, 0, 0, 0] = float("nan")
    _load_error(_resave(model_file, tmp_path / "nan.pt", edit), "'bank_4' holds non-finite values \\(1 NaN, 0 inf\\)")

    def edit_inf(p):
        p["state_dict"]["fg_bias"].fill_(float("inf"))
    _load_error(_resave(model_file, tmp_path / "inf.pt", edit_inf), "'fg_bias' holds non-finite values")


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), None, "1.0"])
def test_model_bad_threshold_is_refused(model_file, tmp_path, threshold):
    def edit(p):
        meta = json.loads(p["meta"])
        meta["threshold"] = threshold
        p["meta"] = json.dumps(meta)
    _load_error(_resave(model_file, tmp_path / "thr.pt", edit), "meta 'threshold'")


def test_model_missing_or_extra_key_is_refused(model_file, tmp_path):
    _load_error(_resave(model_file, tmp_path / "missing.pt", lambda p: p["state_dict"].pop("bank_8")),
                "missing key 'bank_8'")
    _load_error(_resave(model_file, tmp_path / "extra.pt",
                        lambda p: p["state_dict"].__setitem__("evil", torch.zeros(1))), "unexpected key 'evil'")

    def reshape(p):
        p["state_dict"]["bank_fg"] = p["state_dict"]["bank_fg"][:1]
    _load_error(_resave(model_file, tmp_path / "shape.pt", reshape), "key 'bank_fg'")


def test_model_changed_tensor_byte_is_refused(model_file, tmp_path):
    def edit(p):
        p["state_dict"]["bank_4"].view(-1).view(torch.uint8)[5] ^= 0x01  # a finite, plausible change
    _load_error(_resave(model_file, tmp_path / "flipped.pt", edit, digest=False), "tensor digest mismatch")


def test_model_without_integrity_record_is_refused(model_file, tmp_path):
    """Every model file of the current format has an integrity record: one without it was edited."""
    def edit(p):
        p.pop("integrity")
        p["state_dict"]["bank_4"].view(-1).view(torch.uint8)[5] ^= 0x01
    _load_error(_resave(model_file, tmp_path / "stripped.pt", edit, digest=False), "no integrity record")


def _edit_meta(**changes):
    def edit(p):
        meta = json.loads(p["meta"])
        meta.update(changes)
        p["meta"] = json.dumps(meta)
    return edit


def test_model_edited_settings_are_refused(model_file, tmp_path):
    """The settings digest covers config and meta: an edited threshold is refused even where it is in range."""
    payload = torch.load(model_file, weights_only=True)
    assert "settings_sha256" in json.loads(payload["integrity"])
    threshold = json.loads(payload["meta"])["threshold"]
    _load_error(_resave(model_file, tmp_path / "thr.pt", _edit_meta(threshold=threshold * 0.9), digest=False),
                "settings digest mismatch")

    def edit_config(p):
        config = json.loads(p["config"])
        config["top_t"] = config["top_t"] + 1
        p["config"] = json.dumps(config)
    _load_error(_resave(model_file, tmp_path / "cfg.pt", edit_config, digest=False), "settings digest mismatch")


@pytest.mark.parametrize("threshold", [1e300, -5.0])
def test_model_threshold_out_of_range_is_refused(model_file, tmp_path, threshold):
    """A threshold outside [0, the score bound] (every image good, or every image anomalous) is refused even with a
    recomputed tensor digest and no settings digest (as files saved before it had)."""
    _load_error(_resave(model_file, tmp_path / "thr.pt", _edit_meta(threshold=threshold)),
                "setting 'threshold' = .* is not allowed")


def test_model_n_train_must_match_the_arrays(model_file, tmp_path):
    """An edited n_train is refused before anything of that size is allocated."""
    _load_error(_resave(model_file, tmp_path / "n.pt", _edit_meta(n_train=10 ** 9)),
                "meta 'n_train' = 1000000000 does not match")


def test_model_top_k_above_n_train_reads_as_n_train(model_file, tmp_path, image):
    """A top_k above the number of training images (files trained before fit clipped it) loads as n_train, with
    the scores such a file gave before (retrieval clips K to N), and an artifact exported from it loads."""
    unclipped = Detector.load(model_file, device="cpu")
    n_train = int(unclipped.meta["n_train"])
    unclipped.config = unclipped.model.config = unclipped.config.replace(top_k=n_train + 7)

    def edit_config(p):
        config = json.loads(p["config"])
        config["top_k"] = n_train + 7
        p["config"] = json.dumps(config)
    det = Detector.load(_resave(model_file, tmp_path / "k.pt", edit_config), device="cpu")
    assert det.config.top_k == det.model.config.top_k == n_train
    images = [image, image[:, ::-1].copy()]
    np.testing.assert_array_equal(det.score_batch(images)[0], unclipped.score_batch(images)[0])
    from cpr_engine.exporter import export_artifact

    folder = export_artifact(det, tmp_path / "art", trt="no")["artifact"]
    assert Detector.load(folder).settings.top_k == n_train


def test_not_a_model_file_is_refused(model_file, tmp_path, recwarn):
    junk = tmp_path / "random.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    _load_error(junk, "is not a readable cpr-engine model file")

    import zipfile
    other_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "not a model")
    _load_error(other_zip, "is not a readable cpr-engine model file")

    import pickle

    class Code:
        def __reduce__(self):
            return (print, ("code ran",))
    pickled = tmp_path / "code.pt"
    torch.save({"format": "cpr-engine-model", "x": Code()}, pickled)
    _load_error(pickled, "is not a readable cpr-engine model file")
    pickled.write_bytes(pickle.dumps(Code()))
    _load_error(pickled, "is not a readable cpr-engine model file")

    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    _load_error(tmp_path / "foreign.pt", "missing format tag")
    _load_error(_resave(model_file, tmp_path / "config.pt", lambda p: p.__setitem__("config", "{oops")),
                "unusable config")
    assert not [str(w.message) for w in recwarn], "a library warning beside the one-line refusal"


def test_fit_reads_a_top_k_above_the_training_images_as_all_of_them(demo_root, tmp_path):
    """Training with fewer images than top_k keeps top_k = the number of images, so the model and an artifact
    exported from it agree with the runtimes' check (top_k <= n_train)."""
    from tests.conftest import TINY

    options = {**TINY, "top_k": 1000}
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options).fit(f"{demo_root}/grass", texture=True, category="grass")
    assert det.config.top_k == det.meta["n_train"] < 1000
    assert Detector.load(det.save(tmp_path / "model.pt"), device="cpu").config.top_k == det.meta["n_train"]


# --- files that are not what they claim, re-signed (a consistent forgery reaches the checks behind the digests)

def test_artifact_graph_onnx_runtime_cannot_load_is_refused(artifact, tmp_path):
    from cpr_engine.contract import NETWORK_ONNX

    for name, data in (("random", np.random.default_rng(1).bytes(2048)), ("empty", b"")):
        folder = _copy(artifact, tmp_path / name)
        staged = tmp_path / f"{name}.onnx"
        staged.write_bytes(data)
        add_file(folder, NETWORK_ONNX, staged)
        with pytest.raises(ArtifactError, match="network.onnx is not a graph ONNX Runtime can load") as info:
            Detector.load(folder)
        assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_artifact_array_holding_a_pickle_is_named(artifact, tmp_path):
    folder = _copy(artifact, tmp_path / "object_array")
    staged = tmp_path / "centers.npy"
    np.save(staged, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    add_file(folder, "centers.npy", staged)
    with pytest.raises(ArtifactError, match="centers.npy is not a plain .npy array"):
        Detector.load(folder)


def test_empty_or_random_checkpoints_are_named(tmp_path):
    from cpr_engine.backbones import build_backbone

    empty, junk = tmp_path / "empty.pt", tmp_path / "junk.pt"
    empty.write_bytes(b"")
    junk.write_bytes(np.random.default_rng(2).bytes(4096))
    _load_error(empty, "is not a readable cpr-engine model file: the file is empty")
    for path, reason in ((empty, "the file is empty"), (junk, "damaged, not a PyTorch file")):
        with pytest.raises(ValueError, match=f"{path.name} is not a readable PyTorch checkpoint: {reason}"):
            build_backbone("efficientnet_lite0", str(path), pretrained=True)


# --- images smaller than the model's finest patch grid ---------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (4, 200), (200, 4)])
def test_image_smaller_than_the_patch_grid_gets_no_verdict(tiny_detector, artifact, shape):
    """An image with a side below the fine map's (fewer pixels than patches) is refused by both detectors, the
    GraphPipeline and training; an image of exactly that side is scored."""
    from cpr_engine.graph_pipeline import GraphPipeline

    size = tiny_detector.config.image_size
    fine = size // tiny_detector.model.backbone.strides[0]
    image = np.full((*shape, 3), 128, np.uint8)
    for det in (tiny_detector, Detector.load(artifact)):
        with pytest.raises(InputError, match=f"image 0 is {shape[1]} x {shape[0]} pixels: a side below {fine}"):
            det.predict(image)
        assert np.isfinite(det.predict(np.full((fine, fine, 3), 128, np.uint8)).score)
    with pytest.raises(InputError, match=f"a side below {fine}"):
        GraphPipeline(tiny_detector, 1, shape)
    from tests.conftest import TINY

    options = dict(TINY)
    variant = options.pop("variant")
    good = [np.full((size, size, 3), v, np.uint8) for v in (90, 120, 150)]
    with pytest.raises(InputError, match=f"image 3 is {shape[1]} x {shape[0]} pixels"):
        Detector(variant, device="cpu", **options).fit([*good, image])


def test_model_window_wider_than_the_map_is_refused(model_file, tmp_path, tiny_detector):
    """The search windows are range-checked against the map sides of the model's backbone, as in an artifact."""
    fine = tiny_detector.config.image_size // tiny_detector.model.backbone.strides[0]

    def edit_config(p):
        config = json.loads(p["config"])
        config["windows"] = [2 * fine + 1, 1]
        p["config"] = json.dumps(config)
    _load_error(_resave(model_file, tmp_path / "w.pt", edit_config), "setting 'windows' = .* is not allowed")


def test_calibrated_on_an_unusual_image_saves_a_file_that_loads(tiny_detector, tmp_path):
    """calibrate() on one image unlike the training images (noise): the threshold stops at the bound that
    loading checks, so the saved model loads (it was refused: 'threshold ... is not allowed')."""
    from cpr_engine import Detector

    det = Detector.load(tiny_detector.save(tmp_path / "trained.pt"), device="cpu")
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    score = det.predict(noise).score
    threshold = det.calibrate([noise])
    bound = det.config.top_t * det.pixel_normal[1]
    assert score > bound and threshold == pytest.approx(bound)
    assert det.meta["threshold_source"].startswith("top_t x the largest good pixel score (below max of 1 ")
    again = Detector.load(det.save(tmp_path / "calibrated.pt"), device="cpu")
    assert again.threshold == pytest.approx(threshold) and again.predict(noise).is_anomalous


def _resign_file(folder: Path, name: str, data: bytes) -> None:
    """Replace ``name`` of ``folder`` by ``data`` with its checksum recorded (a consistent edit)."""
    staged = folder.parent / f"{folder.name}.{name}"
    staged.write_bytes(data)
    add_file(folder, name, staged)
    staged.unlink()


@pytest.mark.needs_native
def test_fortran_ordered_artifact_arrays_load_and_score_the_same(artifact, tmp_path):
    """Arrays stored in Fortran order (same values, re-signed) are read as C order, not refused at predict."""
    folder = _copy(artifact, tmp_path / "fortran")
    for name in ("bank_4", "memory_8", "train_hists"):
        buffer = io.BytesIO()
        np.save(buffer, np.asfortranarray(np.load(artifact / f"{name}.npy")), allow_pickle=False)
        _resign_file(folder, f"{name}.npy", buffer.getvalue())
    assert not np.load(folder / "bank_4.npy", mmap_mode="r").flags.c_contiguous
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    want, got = Detector.load(artifact).predict(image), Detector.load(folder).predict(image)
    assert got.score == pytest.approx(want.score, rel=1e-6)
    np.testing.assert_allclose(got.anomaly_map, want.anomaly_map, rtol=1e-6, atol=1e-6)


@pytest.mark.needs_native
@pytest.mark.parametrize("case", ["npz", "header_larger_than_file"])
def test_artifact_array_that_is_not_a_plain_npy_is_refused(artifact, tmp_path, case):
    """A .npz archive under an .npy name, or a header claiming 10^12 rows (was a 1 PiB allocation for the
    arrays read into memory): ArtifactError naming the file, before anything of that size is allocated."""
    folder = _copy(artifact, tmp_path / case)
    hists = np.load(artifact / "train_hists.npy")
    buffer = io.BytesIO()
    if case == "npz":
        np.savez(buffer, a=hists)
        data = buffer.getvalue()
    else:
        np.save(buffer, hists, allow_pickle=False)
        data = buffer.getvalue().replace(f"({hists.shape[0]}, ".encode(), b"(1000000000000, ", 1)
        assert data != buffer.getvalue()
    _resign_file(folder, "train_hists.npy", data)
    with pytest.raises(ArtifactError, match="train_hists.npy is not a plain .npy array") as info:
        Detector.load(folder)
    assert "\n" not in str(info.value)


def test_deeply_nested_manifest_is_refused_in_one_line(artifact, tmp_path):
    folder = _copy(artifact, tmp_path / "nested")
    (folder / MANIFEST).write_text("[" * 100_000)
    with pytest.raises(ArtifactError, match="unreadable manifest") as info:
        Detector.load(folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("providers", [[], "CPUExecutionProvider", [5], 5])
def test_providers_that_are_not_a_list_of_names_are_refused(artifact, providers):
    with pytest.raises(InputError, match="providers must be a non-empty list of ONNX Runtime execution provider"):
        Detector.load(artifact, providers=providers)
