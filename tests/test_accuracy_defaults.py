"""The 1-NN baseline, raw-tap descriptors and the settings chosen from the training images."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cpr_engine import Detector
from cpr_engine.backbones import build_backbone
from cpr_engine.baseline import KNNBaseline, full_bank_search
from cpr_engine.config import CPRConfig
from cpr_engine.data import load_split, read_image
from cpr_engine.lrb import RawTapHead
from cpr_engine.training.selection import choose_windows, match_offsets, validation_split

from tests.conftest import TINY


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("b,c,h,w,m", [(1, 3, 1, 1, 1), (2, 5, 3, 7, 37), (3, 17, 5, 4, 70_001)])
def test_full_bank_search_matches_brute_force(b, c, h, w, m):
    query, bank = _unit(b, c, h, w, seed=1), _unit(m, c, seed=2)
    got = full_bank_search(query, bank)
    q = query.permute(0, 2, 3, 1).reshape(-1, c).double()
    want = (1 - (q @ bank.double().T).max(1).values).reshape(b, h, w)
    assert got.shape == (b, h, w) and torch.allclose(got.double(), want, atol=1e-6)


def test_global_window_search_equals_an_exhaustive_search_of_the_retrieved_images():
    """The widest window (2 * side - 1) that training may choose searches every position of every
    retrieved image: the same as a full search over those images."""
    from cpr_engine import ops

    query, bank = _unit(2, 6, 5, 7, seed=7), _unit(9, 6, 5, 7, seed=8)
    index = torch.tensor([[3, 1, 8], [0, 0, 5]])
    got = ops.nn_search(query, bank, index, 2 * 7 - 1)
    for b in range(2):
        rows = bank[index[b]].permute(0, 2, 3, 1).reshape(-1, 6)
        want = full_bank_search(query[b:b + 1], rows)[0]
        assert torch.allclose(got[b], want, atol=1e-5)


def test_knn_baseline_scores_its_training_image_zero_and_a_defect_higher(demo_root):
    cfg = CPRConfig(image_size=64)
    train = [read_image(s.image_path) for s in load_split(demo_root, "mvtec", "grass", "train")]
    knn = KNNBaseline(cfg, build_backbone(cfg.backbone)).fit(train[1:])
    scores, maps = knn.score_batch([train[1], train[0]])
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert abs(scores[0]) < 1e-3 and scores[1] > 10 * abs(scores[0]) + 1e-3
    with pytest.raises(RuntimeError, match="not fitted"):
        KNNBaseline(cfg, build_backbone(cfg.backbone)).score_batch(train[:1])


@pytest.mark.parametrize("c,d", [(40, 64), (40, 40), (112, 16)])
def test_raw_tap_head(c, d):
    taps = torch.randn(2, c, 6, 5, generator=torch.Generator().manual_seed(3))
    head = RawTapHead(c, d)
    head.fit(taps)
    out = head(taps)
    assert out.shape == (2, d, 6, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 6, 5), atol=1e-5)
    p = head.projection
    assert torch.allclose(p @ p.T if d <= c else p.T @ p, torch.eye(min(c, d)), atol=1e-5)  # orthonormal
    if d >= c:  # exact: cosine similarities of the raw taps
        a = F.normalize(taps, dim=1)
        assert torch.allclose(torch.einsum("bchw,bcij->bhwij", out, out), torch.einsum("bchw,bcij->bhwij", a, a),
                              atol=1e-5)


def test_validation_split():
    fit, val = validation_split(20, 0.15, 0)
    assert len(val) == 3 and len(fit) == 17 and not set(fit) & set(val) and set(fit) | set(val) == set(range(20))
    assert np.array_equal(validation_split(20, 0.15, 0)[1], val)  # seeded
    fit, val = validation_split(6, 0.15, 0)
    assert len(val) == 0 and len(fit) == 6  # too few images to hold any out


@pytest.mark.parametrize("dy,dx", [(0, 0), (2, -1), (-3, 3)])
def test_match_offsets_find_the_shift(dy, dx):
    f = _unit(1, 8, 12, 12, seed=4)
    ref = torch.roll(f, shifts=(dy, dx), dims=(2, 3))
    off = match_offsets(f[0], ref).reshape(12, 12)
    inner = off[3:-3, 3:-3]  # away from the wrapped border
    assert torch.all(inner == max(abs(dy), abs(dx)))


def test_choose_windows_aligned_small_shifted_wide():
    f4, f8 = _unit(4, 8, 16, 16, seed=5), _unit(4, 8, 8, 8, seed=6)
    refs = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    aligned = [f4[:1].repeat(4, 1, 1, 1), f8[:1].repeat(4, 1, 1, 1)]
    assert choose_windows(aligned, refs, (9, 5)) == (3, 1)
    shifted = [torch.stack([torch.roll(f4[0], 3 * i, dims=2) for i in range(4)]),
               torch.stack([torch.roll(f8[0], 2 * i, dims=2) for i in range(4)])]
    assert choose_windows(shifted, refs, (9, 5)) == (9, 5)  # capped at max_windows


def test_raw_descriptors_keep_each_taps_own_width():
    """Raw taps are not zero-padded to a common D (same cosines, more search work); models saved with
    other widths load with theirs."""
    from cpr_engine.backbones import build_backbone
    from cpr_engine.config import CPRConfig
    from cpr_engine.torch_model import CPRModel, descriptor_widths

    raw = CPRConfig(descriptor="raw", descriptor_dim=384)
    assert descriptor_widths(raw, (40, 112)) == (40, 112)
    assert descriptor_widths(CPRConfig(descriptor="raw", descriptor_dim=64), (40, 112)) == (40, 64)
    assert descriptor_widths(CPRConfig(descriptor="learned", descriptor_dim=64), (40, 112)) == (64, 64)
    backbone = build_backbone(raw.backbone, pretrained=False)
    assert CPRModel(raw, backbone, 2).descriptor_dims == tuple(backbone.channels)
    padded = CPRModel(raw, backbone, 2, widths=(112, 112))
    assert padded.descriptor_dims == (112, 112) and [h.projection.shape[0] for h in padded.lrb] == [112, 112]


def test_raw_descriptor_model_trains_without_steps_and_exports(demo_root, tmp_path):
    from cpr_engine.exporter import export_artifact

    options = dict(TINY, descriptor="raw")
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options).fit(f"{demo_root}/coffee")
    assert det.config.descriptor == "raw" and det.meta["descriptor"] == "raw" and det.meta["steps"] == 0
    assert det.model.descriptor_dims == (16, 16) and det.model.bank_4.shape[1] == 16
    path = det.save(tmp_path / "model.pt")
    again = Detector.load(path, device="cpu")
    images = [read_image(s.image_path) for s in load_split(demo_root, "mvtec", "coffee", "test")[:3]]
    assert np.allclose(det.score_batch(images)[0], again.score_batch(images)[0], atol=1e-5)
    report = export_artifact(det, tmp_path / "artifact")
    assert report["onnx_max_error"]["desc_4"] < 1e-3 and report["opencv_graph_max_error"]["desc_8"] < 1e-3
    assert json.loads((tmp_path / "artifact" / "manifest.json").read_text())["descriptor_dims"] == [16, 16]
    runtime = Detector.load(tmp_path / "artifact")
    assert np.allclose(runtime.score_batch(images)[0], det.score_batch(images)[0], rtol=1e-3, atol=1e-3)


def test_auto_choice_is_the_best_validation_candidate(demo_root):
    """The best validation mean wins; near-ties (within 0.005) go to the cheapest search, then the location
    offset; equal means to the cheapest foreground mode."""
    options = dict(TINY, val_fraction=0.25)
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options).fit(f"{demo_root}/coffee")
    rows = det.meta["selection"]
    assert det.meta["n_validation"] == 2
    side4, side8 = det.model.bank_4.shape[-1], det.model.bank_8.shape[-1]
    global_search = [2 * side4 - 1, 2 * side8 - 1]
    assert global_search in [r["windows"] for r in rows] and len({tuple(r["windows"]) for r in rows}) == 2
    # the global search is a candidate for the raw taps only (its cost with 384-d learned descriptors)
    # ... each with the foreground on the map / on the image score only / off and the location offset on / off
    modes = ("map", "score", "off")
    assert {(r["descriptor"], r["foreground"], r["location_offset"], tuple(r["windows"]) == tuple(global_search))
            for r in rows} == {("learned", fg, lo, False) for fg in modes for lo in (True, False)} | {
        ("raw", fg, lo, g) for fg in modes for lo in (True, False) for g in (True, False)} and len(rows) == 18
    # the image-score-only mode has the maps of "off" and the image score of "map"
    for r in rows:
        if r["foreground"] == "score":
            same = {m: next(o for o in rows if o["foreground"] == m and all(
                o[k] == r[k] for k in ("descriptor", "windows", "location_offset"))) for m in ("map", "off")}
            assert r["image_AUROC"] == same["map"]["image_AUROC"]
            assert all(r[k] == same["off"][k] for k in ("pixel_AUROC", "pixel_AUPRO", "pixel_AP"))
    top = max(r["mean"] for r in rows)
    near_best = [r for r in rows if r["mean"] >= top - 0.005]
    best = min(near_best, key=lambda r: (sum(w * w for w in r["windows"]), not r["location_offset"], -r["mean"],
                                         ("off", "map", "score").index(r["foreground"])))
    assert best["mean"] >= top - 0.005 and all(sum(w * w for w in r["windows"]) >= sum(w * w for w in best["windows"])
                                               for r in near_best)
    assert (det.meta["descriptor"], det.meta["foreground"], det.meta["windows"], det.meta["location_offset"]) == (
        best["descriptor"], best["foreground"], best["windows"], best["location_offset"])
    assert det.config.descriptor == best["descriptor"] and det.model.foreground_mode == best["foreground"]
    assert bool((det.model.location_offset != 0).any()) == best["location_offset"]
    assert list(det.config.windows) == det.meta["windows"]
    # the user's configuration object is not changed by what training chose
    assert Detector(variant, **options).config.descriptor == "auto"


def test_auto_descriptor_is_raw_on_a_cpu_budget_and_compared_otherwise():
    """auto: raw taps alone on a CPU with the default budget; learned vs raw when the user sets
    steps or a time budget, or on a GPU; an explicit choice is the only candidate."""
    from cpr_engine import CPRConfig

    cfg = CPRConfig()
    assert cfg.descriptor == "auto" and cfg.descriptor_candidates("cpu") == ("raw",)
    assert cfg.descriptor_candidates("cuda") == ("learned", "raw")
    assert CPRConfig(steps=100).descriptor_candidates("cpu") == ("learned", "raw")
    assert CPRConfig(time_budget=30.0).descriptor_candidates("cpu") == ("learned", "raw")
    assert CPRConfig(descriptor="learned").descriptor_candidates("cpu") == ("learned",)
    assert CPRConfig(descriptor="raw").descriptor_candidates("cuda") == ("raw",)


def test_near_ties_go_to_the_cheapest_search():
    from cpr_engine.training.selection import best_candidate

    rows = [{"windows": [79, 39], "mean": 0.800, "tag": "global"}, {"windows": [9, 5], "mean": 0.797, "tag": "9/5"},
            {"windows": [3, 1], "mean": 0.790, "tag": "3/1"}, {"windows": [9, 5], "mean": 0.799, "tag": "9/5 better"}]
    assert best_candidate(rows)["tag"] == "9/5 better"  # 3/1 is cheaper but 0.01 behind
    rows[1]["mean"] = rows[3]["mean"] = 0.79
    assert best_candidate(rows)["tag"] == "global"  # nothing else within 0.005


def test_near_ties_then_go_to_the_location_offset():
    from cpr_engine.training.selection import best_candidate

    rows = [{"windows": [9, 5], "location_offset": False, "mean": 0.7981, "tag": "off"},
            {"windows": [9, 5], "location_offset": True, "mean": 0.7979, "tag": "on"},
            {"windows": [3, 1], "location_offset": False, "mean": 0.7960, "tag": "cheaper, off"}]
    assert best_candidate(rows)["tag"] == "cheaper, off"  # the cheaper search still comes first
    rows[2]["mean"] = 0.70
    assert best_candidate(rows)["tag"] == "on"  # then the offset, within the tolerance
    rows[1]["mean"] = 0.790
    assert best_candidate(rows)["tag"] == "off"  # not when it is clearly worse


def test_equal_means_go_to_the_cheapest_foreground_mode():
    from cpr_engine.training.selection import best_candidate

    rows = [{"windows": [9, 5], "location_offset": True, "foreground": fg, "mean": mean, "tag": fg}
            for fg, mean in (("map", 0.7150), ("score", 0.7150), ("off", 0.7150))]
    assert best_candidate(rows)["tag"] == "off"  # the foreground changed no metric: no foreground
    rows[2]["mean"] = 0.7149
    assert best_candidate(rows)["tag"] == "map"  # a better mean still wins, however small
    rows[0]["mean"] = 0.7148
    assert best_candidate(rows)["tag"] == "score"


def test_foreground_on_map_false_leaves_the_map_mode_out(demo_root):
    options = dict(TINY, val_fraction=0.25, foreground_on_map=False)
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options).fit(f"{demo_root}/coffee")
    modes = {r["foreground"] for r in det.meta["selection"]}
    assert det.meta["foreground_fitted"] and modes == {"score", "off"}
    assert det.meta["foreground"] in modes and det.model.foreground_mode == det.meta["foreground"]
