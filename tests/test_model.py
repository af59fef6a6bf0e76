import re

import numpy as np
import pytest
import torch

from cpr_engine import CPRConfig, Detector
from cpr_engine.backbones import build_backbone
from cpr_engine.data import read_image
from cpr_engine.detector import MODEL_FORMAT, MODEL_FORMAT_VERSION
from cpr_engine.errors import InputError
from cpr_engine.inputs import Prediction
from cpr_engine.torch_model import CPRModel
from tests.conftest import TINY


def test_model_output_shapes_and_buffers():
    cfg = CPRConfig.preset("fast", image_size=96, top_k=4)
    model = CPRModel(cfg, build_backbone(cfg.backbone, pretrained=False), n_train=5).eval()
    assert model.backbone.strides == (8, 16)  # the default taps: stride-8 and stride-16 stages
    assert model.bank_4.shape == (5, 64, 12, 12) and model.bank_8.shape == (5, 64, 6, 6)
    assert model.train_hists.shape == (5, 25, 13)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 96))
    assert out.pred_score.shape == (2,) and out.anomaly_map.shape == (2, 96, 96)
    assert torch.isfinite(out.anomaly_map).all()
    assert {k.split(".")[0] for k in model.state_dict()} >= {"backbone", "lrb", "bank_4", "centers", "bank_fg"}


def test_training_image_retrieves_itself_and_scores_zero(tiny_detector, demo_root):
    """Integration of retrieval + NN search: a bank image finds itself (distance 0) unless excluded."""
    model = tiny_detector.model
    n = model.bank_4.shape[0]
    from cpr_engine.preprocess import to_model_input
    from cpr_engine.data import load_split
    paths = [s.image_path for s in load_split(demo_root, "mvtec", "grass", "train")]
    x = torch.from_numpy(to_model_input([read_image(p) for p in paths], 64))
    with torch.no_grad():
        own = model(x)
        loo = model(x, exclude=torch.arange(n))
        from_taps = model.score_features(model.features(x), exclude=torch.arange(n))  # what training scores
        index = model.retrieve(model.features(x)[0])
    assert torch.equal(from_taps.pred_score, loo.pred_score) and torch.equal(from_taps.anomaly_map, loo.anomaly_map)
    assert (index[:, 0] == torch.arange(n)).all()
    assert own.anomaly_map.abs().max() < 1e-4
    assert (loo.pred_score > 1e-3).all()
    np.testing.assert_allclose(sorted(loo.pred_score.numpy()), sorted(tiny_detector.meta["loo_scores"]), rtol=1e-4)
    scores = tiny_detector.meta["loo_scores"]  # fewer than 10: the largest (the robust rule: test_fail_closed.py)
    assert len(scores) < 10 and tiny_detector.threshold == pytest.approx(max(scores))
    assert tiny_detector.meta["threshold_source"] == f"max of {len(scores)} leave-one-out scores of the training images"


def test_defect_scores_above_good(tiny_detector, demo_root):
    from cpr_engine.data import load_split
    samples = load_split(demo_root, "mvtec", "grass", "test")
    scores, maps = tiny_detector.score_batch([read_image(s.image_path) for s in samples])
    labels = np.array([s.label for s in samples])
    assert scores[labels == 1].mean() > scores[labels == 0].mean()


def test_predict_inputs_and_resolution(tiny_detector, demo_root):
    path = f"{demo_root}/grass/test/good/000.png"
    image = read_image(path)
    one = tiny_detector.predict(image)
    assert isinstance(one, Prediction) and one.anomaly_map.shape == image.shape[:2]
    assert one.anomaly_map.dtype == np.float32 and isinstance(one.is_anomalous, bool)
    assert tiny_detector.predict(path).score == pytest.approx(one.score, rel=1e-5)
    gray = image.mean(-1).astype(np.uint8)
    assert tiny_detector.predict(gray).anomaly_map.shape == gray.shape
    batch = tiny_detector.predict(np.stack([image, image[::-1]]))
    assert len(batch) == 2 and batch[0].score == pytest.approx(one.score, rel=1e-5)
    wide = np.ascontiguousarray(np.concatenate([image, image], axis=1))
    assert tiny_detector.predict(wide).anomaly_map.shape == wide.shape[:2]


@pytest.mark.parametrize("bad,err,match", [
    (np.zeros((32, 32, 2), np.uint8), ValueError, "channel"),
    (np.full((32, 32, 3), np.nan, np.float32), ValueError, "NaN"),
    ([], ValueError, "empty"),
    (12, InputError, "expected an image"),
])
def test_predict_bad_input(tiny_detector, bad, err, match):
    with pytest.raises(err, match=match):
        tiny_detector.predict(bad)


def test_predict_corrupt_file(tiny_detector, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError, match="broken.png"):
        tiny_detector.predict(bad)


def test_save_load_roundtrip_and_weights_only(tiny_detector, demo_root, tmp_path):
    path = tiny_detector.save(tmp_path / "m" / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == MODEL_FORMAT and payload["format_version"] == MODEL_FORMAT_VERSION
    loaded = Detector.load(path, device="cpu")
    assert loaded.config == tiny_detector.config and loaded.threshold == tiny_detector.threshold
    image = read_image(f"{demo_root}/grass/test/good/001.png")
    a, b = tiny_detector.predict(image), loaded.predict(image)
    assert a.score == pytest.approx(b.score, rel=1e-6)
    np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)


def test_load_errors(tiny_detector, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        Detector.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable cpr-engine model"):
        Detector.load(junk)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing format tag"):
        Detector.load(tmp_path / "other.pt")
    path = tiny_detector.save(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = MODEL_FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=f"format version {MODEL_FORMAT_VERSION + 1}"):
        Detector.load(tmp_path / "newer.pt")
    full = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        Detector.load(tmp_path / "cut.pt")


def test_untrained_detector_and_bad_fit(tmp_path):
    det = Detector("faster", device="cpu")
    with pytest.raises(RuntimeError, match="not trained"):
        det.predict(np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        det.fit(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing"):
        det.fit(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least 2"):
        Detector("faster", device="cpu", **{k: v for k, v in TINY.items() if k != "variant"}).fit(
            [np.zeros((64, 64, 3), np.uint8)])


@pytest.mark.parametrize("field, value, words", [
    ("batch_size", "8", "batch_size must be an integer, got '8' (str)"),
    ("top_k", 2.0, "top_k must be an integer"),
    ("image_size", True, "image_size must be an integer, got True (bool)"),
    ("time_budget", "90", "time_budget must be a number"),
    ("use_foreground", 1, "use_foreground must be True or False"),
    ("foreground_on_map", "no", "foreground_on_map must be True or False"),
    ("windows", (3.5, 1), "windows must be a sequence of integers"),
    ("descriptor", 3, "descriptor must be a string"),
    ("blur_sigma", float("nan"), "blur_sigma must be in [0, image_size = 320]"),
    ("blur_sigma", 1e6, "blur_sigma must be in [0, image_size = 320], got 1000000.0"),
])
def test_config_values_of_the_wrong_type_are_named(field, value, words):
    with pytest.raises(InputError, match=re.escape(words)):
        Detector("fast", **{field: value})


def test_predict_batch_size_must_be_a_positive_integer(tiny_detector):
    image = np.zeros((32, 32, 3), np.uint8)
    for bad in ("8", 0, 2.0, True):
        with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
            tiny_detector.predict([image], batch_size=bad)


def test_foreground_mode_round_trip_and_unknown_mode(object_detector, tmp_path):
    from cpr_engine import Detector

    det = Detector.load(object_detector.save(tmp_path / "model.pt"), device="cpu")
    for mode in ("score", "off", "map"):
        det.model.set_foreground_mode(mode)
        assert det.model.foreground_mode == mode
        assert Detector.load(det.save(tmp_path / f"{mode}.pt"), device="cpu").model.foreground_mode == mode
    with pytest.raises(ValueError, match=r"one of \('map', 'score', 'off'\), got 'both'"):
        det.model.set_foreground_mode("both")
    assert det.model.foreground_mode == "map"


def test_grid_wider_than_the_fine_map_is_refused_before_training(demo_root, tmp_path):
    """A retrieval grid with more blocks per side than the fine map has patches (grid=1000 allocated
    10^6 histogram blocks per image and was killed for memory): one line, nothing written."""
    from cpr_engine.backbones import BACKBONES

    options = dict(TINY)
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options, grid=17)
    fine = 64 // BACKBONES[det.config.backbone].strides[0]
    with pytest.raises(InputError, match=f"grid must be at most the fine map side, {fine} at image_size 64 "
                                         "with this backbone; got 17"):
        det.fit(f"{demo_root}/grass", run_dir=str(tmp_path / "run"))
    assert det.model is None


@pytest.mark.parametrize("device, words", [("bogus", "expected cpu, cuda or cuda:N, got 'bogus'"),
                                           (3.5, "expected cpu, cuda or cuda:N, got 3.5"),
                                           ("meta", "expected cpu, cuda or cuda:N, got 'meta'"),
                                           ("cuda:99", "'cuda:99': this machine has ")])
def test_impossible_device_is_named_at_construction(device, words):
    """A torch RuntimeError / TypeError, or 'Torch not compiled with CUDA enabled' (AssertionError) at
    the first use, became one InputError at construction (the CLIs' --device check is the same)."""
    with pytest.raises(InputError, match=re.escape(words)):
        Detector("faster", device=device)
