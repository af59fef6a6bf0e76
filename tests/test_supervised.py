"""Supervised mode: the defect split, defect folders, pasted real defects, training and the CLI."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cpr_engine.data import (ImageReadError, Sample, defect_folder_pairs, load_split, read_defects,
                             relative_names, split_defects, write_image, write_mask)
from cpr_engine.training.queries import QuerySampler, RealDefects
from cpr_engine.training.real_defects import (BLEND_RANGE, MAX_PASTES, Paste, apply_pastes, check_defects,
                                              defects_at_size, draw_pastes, resize_mask)
from cpr_engine.training.sampling import sample_points
from cpr_engine.training.synthesis import AnomalySource, synthesize_anomaly

from tests.conftest import TINY
from tests.helpers.cli import cli_error
from tests.test_cli import TINY_ARGS


def fake_test_split(n_good=3, n_defect=12):
    """A test split of file names only (split_defects never reads files)."""
    good = [Sample(f"/d/cat/test/good/{i:03d}.png", 0, None, "good", "cat") for i in range(n_good)]
    bad = [Sample(f"/d/cat/test/crack/{i:03d}.png", 1, f"/d/cat/ground_truth/crack/{i:03d}_mask.png", "crack", "cat")
           for i in range(n_defect)]
    return good + bad


def blob_image(size=48, seed=0):
    """(size, size, 3) uint8 noise image and a (size, size) bool mask with a 12 x 10 defect."""
    image = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[10:22, 14:24] = True
    return image, mask


def write_defect(folder, stem, mask_name, shape=(40, 40), empty=False):
    """Write folder/<stem>.png (gray) and folder/<mask_name> (a 10 x 12 defect: 120 pixels, or none)."""
    image = np.full((*shape, 3), 90, np.uint8)
    write_image(folder / f"{stem}.png", image)
    mask = np.zeros(shape, bool)
    if not empty:
        mask[5:15, 8:20] = True
    write_mask(folder / mask_name, mask)


# ------------------------------------------------------------------------------------- split_defects

def test_split_moves_n_defects_out_of_the_test_set():
    test = fake_test_split()
    moved, remaining = split_defects(test, 5)
    assert len(moved) == 5 and len(remaining) == len(test) - 5
    assert {s.image_path for s in moved}.isdisjoint(s.image_path for s in remaining)
    assert all(s.label == 1 for s in moved)
    assert [s for s in remaining if s.label == 0] == [s for s in test if s.label == 0]  # good images unchanged
    assert remaining == [s for s in test if s not in moved]  # original order kept


def test_split_is_the_dra_shuffle_and_deterministic_by_seed():
    test = fake_test_split()
    defective = [s for s in test if s.label == 1]
    reference = list(defective)
    np.random.RandomState(42).shuffle(reference)  # the DRA / CPR reference code
    assert split_defects(test, 10)[0] == reference[:10]
    assert split_defects(test, 10) == split_defects(test, 10, seed=42)
    assert split_defects(test, 3)[0] == split_defects(test, 10)[0][:3]  # a smaller N moves a prefix
    assert split_defects(test, 10, seed=7)[0] != split_defects(test, 10)[0]
    assert split_defects(test, 0) == ([], test)


def test_split_on_the_demo_set(demo_root):
    test = load_split(demo_root, "mvtec", "coffee", "test")
    moved, remaining = split_defects(test, 3)
    assert len(remaining) == 3 + 1 and sum(s.label for s in remaining) == 1
    names = relative_names([s.image_path for s in moved], demo_root)
    assert all(n.startswith("coffee/test/") and n.endswith(".png") for n in names)


@pytest.mark.parametrize("n, match", [(13, "category 'cat' has 12 defective test images; cannot move 13"),
                                      (-1, "must be >= 0, got -1")])
def test_split_rejects_bad_n(n, match):
    with pytest.raises(ValueError, match=match):
        split_defects(fake_test_split(), n)


# ------------------------------------------------------------------------------------- defect folders

def test_defect_folder_pairs_both_layouts(tmp_path):
    (tmp_path / "masks").mkdir()
    write_defect(tmp_path, "b", "masks/b.png")
    write_defect(tmp_path, "a", "a_mask.png")
    write_defect(tmp_path, "c", "masks/c_mask.PNG")
    pairs = defect_folder_pairs(tmp_path)
    assert [(p[0].rsplit("/", 1)[1], p[1].split(str(tmp_path))[1]) for p in pairs] == [
        ("a.png", "/a_mask.png"), ("b.png", "/masks/b.png"), ("c.png", "/masks/c_mask.PNG")]
    images, masks = read_defects(pairs)
    assert [im.shape for im in images] == [(40, 40, 3)] * 3 and all(m.sum() == 120 for m in masks)


def test_defect_folder_errors(tmp_path):
    write_defect(tmp_path, "a", "a_mask.png")
    write_image(tmp_path / "lonely.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="defective image .*lonely.png' has no ground-truth mask; looked for "
                                                ".*masks/lonely.png.*lonely_mask.png"):
        defect_folder_pairs(tmp_path)
    only_masks = tmp_path / "only_masks"
    only_masks.mkdir()
    write_mask(only_masks / "x_mask.png", np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="contains no defect images"):
        defect_folder_pairs(only_masks)


def test_read_defects_errors(tmp_path):
    write_defect(tmp_path, "empty", "empty_mask.png", empty=True)
    with pytest.raises(ValueError, match="mask .*empty_mask.png' of defect image .*empty.png' is empty"):
        read_defects([(str(tmp_path / "empty.png"), str(tmp_path / "empty_mask.png"))])
    write_image(tmp_path / "big.png", np.zeros((50, 60, 3), np.uint8))
    write_defect(tmp_path, "small", "small_mask.png", shape=(40, 40))
    with pytest.raises(ImageReadError, match="small_mask.png.*mask size 40x40 .* differs from the size 60x50 .*big.png"):
        read_defects([(str(tmp_path / "big.png"), str(tmp_path / "small_mask.png"))])
    with pytest.raises(FileNotFoundError, match="defect image '/x/1.png' has no mask"):
        read_defects([("/x/1.png", None)])
    with pytest.raises(ValueError, match="no defect images given"):
        read_defects([])


# ------------------------------------------------------------------------------------- pasting

def test_apply_pastes_changes_exactly_the_pasted_pixels():
    image, _ = blob_image(seed=1)
    defect, mask = blob_image(seed=2)
    before = np.zeros(mask.shape, bool)
    before[30:34, 30:40] = True  # a synthetic anomaly already there
    out, union = apply_pastes(image, before, [Paste(defect, mask, 0.7)])
    assert np.array_equal(out[~mask], image[~mask])  # byte-identical outside the pasted mask
    expected = 0.3 * image[mask].astype(np.float64) + 0.7 * defect[mask]
    assert np.abs(out[mask] - expected).max() <= 0.5 + 1e-3  # the blend, up to rounding
    assert np.array_equal(union, before | mask)


def test_apply_pastes_in_sequence_and_union():
    image, _ = blob_image(seed=3)
    defects = np.stack([blob_image(seed=s)[0] for s in (4, 5)])
    masks = np.stack([blob_image()[1]] * 2)
    pastes = draw_pastes(defects, masks, np.random.default_rng(0))
    assert 1 <= len(pastes) <= MAX_PASTES and all(BLEND_RANGE[0] <= p.factor <= BLEND_RANGE[1] for p in pastes)
    empty = np.zeros(masks[0].shape, bool)
    out, union = apply_pastes(image, empty, pastes)
    assert np.array_equal(union, np.logical_or.reduce([p.mask for p in pastes]))
    assert np.array_equal(out[~union], image[~union])
    current = image
    for paste in pastes:  # each paste blends into what the previous ones left
        current, _ = apply_pastes(current, empty, [paste])
    assert np.array_equal(out, current)


def test_draw_pastes_is_deterministic_and_moves_defects():
    defect, mask = blob_image(seed=6)
    images, masks = defect[None], mask[None]
    draws = [draw_pastes(images, masks, np.random.default_rng(seed)) for seed in (11, 11, 12)]
    assert len(draws[0]) == len(draws[1]) and all(
        np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.factor == b.factor
        for a, b in zip(draws[0], draws[1]))
    pastes = [p for seed in range(20) for p in draw_pastes(images, masks, np.random.default_rng(seed))]
    areas = np.array([p.mask.sum() for p in pastes])
    assert ((areas >= 0.2 * mask.sum()) & (areas <= 2.5 * mask.sum())).all()  # scale 0.5 .. 1.5, in the image
    assert sum(not np.array_equal(p.mask, mask) for p in pastes) > len(pastes) // 2  # ~90 % are moved


def test_resize_mask_keeps_small_defects():
    mask = np.zeros((100, 100), bool)
    mask[50, 50] = True
    small = resize_mask(mask, 32)
    assert small.shape == (32, 32) and 1 <= small.sum() <= 4
    images, masks = defects_at_size([np.zeros((100, 100, 3), np.uint8)], [mask], 32)
    assert images.shape == (1, 32, 32, 3) and np.array_equal(masks[0], small)
    with pytest.raises(ValueError, match=r"defect masks \[0\] \(of 1\) are empty at 32x32"):
        check_defects(images, np.zeros_like(masks), 32)


# ------------------------------------------------------------------------------------- training queries

def sampler_inputs(size=32):
    good = np.stack([blob_image(size, seed)[0] for seed in range(4)])
    defect, mask = blob_image(size, seed=9)
    real = RealDefects(defect[None], mask[None], np.ones((1, size, size), np.float32), np.array([[2, 3, 1]]))
    return good, np.ones((4, size, size), np.float32), AnomalySource(images=list(good)), np.array(
        [[1, 2], [0, 2], [3, 1], [0, 1]]), real


def test_sampler_without_defects_draws_what_the_unsupervised_trainer_drew():
    good, fg, source, references, _ = sampler_inputs()
    query = QuerySampler(good, fg, False, source, references).draw(2, 1, np.random.default_rng(5))
    image, anomaly = synthesize_anomaly(good[2], np.random.default_rng(5), source)
    assert np.array_equal(query.image, image) and np.array_equal(query.anomaly, anomaly) and query.reference == 1


def test_real_defective_query_keeps_positives_at_normal_pixels():
    good, fg, source, references, real = sampler_inputs()
    sampler = QuerySampler(good, fg, False, source, references, real, p_real_defect=1.0, p_paste=0.0)
    query = sampler.draw(0, 1, np.random.default_rng(0))
    assert np.array_equal(query.image, real.images[0]) and np.array_equal(query.anomaly, real.masks[0])
    assert query.reference == 3 and sampler.real_queries == 1 and sampler.pasted_queries == 0
    weight = torch.from_numpy(query.foreground * ~query.anomaly)[None]
    xy, valid = sample_points(weight, 500, torch.Generator().manual_seed(0))
    pixels = xy[0].long().numpy()
    assert valid.all() and not query.anomaly[pixels[:, 1], pixels[:, 0]].any()


def test_pasted_query_marks_the_pasted_defects():
    good, fg, source, references, real = sampler_inputs()
    sampler = QuerySampler(good, fg, False, source, references, real, p_real_defect=0.0, p_paste=1.0)
    for seed in range(5):
        query = sampler.draw(1, 0, np.random.default_rng(seed))
        assert np.array_equal(query.image[~query.anomaly], good[1][~query.anomaly])
    assert sampler.pasted_queries == 5 and sampler.real_queries == 0
    with pytest.raises(ValueError, match="p_paste must be a probability in \\[0, 1\\], got 1.5"):
        QuerySampler(good, fg, False, source, references, real, p_paste=1.5)


# ------------------------------------------------------------------------------------- Detector

@pytest.fixture(scope="module")
def defect_dir(demo_root, tmp_path_factory):
    """Two grass defect test images and their masks in the documented folder layout."""
    folder = tmp_path_factory.mktemp("defects")
    (folder / "masks").mkdir()
    for kind in ("scratch", "stain"):
        shutil.copy(f"{demo_root}/grass/test/{kind}/000.png", folder / f"{kind}.png")
        shutil.copy(f"{demo_root}/grass/ground_truth/{kind}/000_mask.png", folder / "masks" / f"{kind}.png")
    return folder


def test_fit_with_defect_folder_records_it_in_the_model(demo_root, defect_dir, tmp_path):
    from cpr_engine import Detector

    options = dict(TINY)
    det = Detector(options.pop("variant"), device="cpu", **options)
    det.fit(f"{demo_root}/grass", texture=True, defects=str(defect_dir), p_real_defect=0.5, p_paste=0.5)
    loaded = Detector.load(det.save(tmp_path / "model.pt"), device="cpu")
    supervised = loaded.meta["supervised"]
    assert [d["image"] for d in supervised["defects"]] == [str(defect_dir / "scratch.png"), str(defect_dir / "stain.png")]
    assert supervised["defects"][0]["mask"] == str(defect_dir / "masks" / "scratch.png")
    assert (supervised["n_defects"], supervised["p_real_defect"], supervised["p_paste"]) == (2, 0.5, 0.5)
    assert supervised["real_queries"] + supervised["pasted_queries"] > 0
    assert loaded.meta["n_train"] == 8  # defects never join the bank


def test_fit_rejects_a_mask_of_another_size(demo_root, tmp_path):
    from cpr_engine import Detector

    write_defect(tmp_path, "d", "d_mask.png", shape=(40, 40))
    write_mask(tmp_path / "d_mask.png", np.ones((30, 40), bool))
    with pytest.raises(ImageReadError, match="d_mask.png.*mask size 40x30"):
        Detector("faster", device="cpu").fit(f"{demo_root}/grass", defects=tmp_path)


# ------------------------------------------------------------------------------------- CLI

def test_cli_n_anomaly_end_to_end(demo_root, tmp_path, capsys):
    from cpr_engine import Detector
    from cpr_engine.cli import eval as eval_cli, train

    sup, base = tmp_path / "sup", tmp_path / "base"
    common = ["--data", demo_root, "--category", "coffee", *TINY_ARGS]
    assert train.main([*common, "--out", str(sup), "--n-anomaly", "2", "--p-real-defect", "0.5"]) == 0
    record = json.loads((sup / "coffee" / "supervised.json").read_text())
    moved = split_defects(load_split(demo_root, "mvtec", "coffee", "test"), 2)[0]
    assert record["split"]["moved"] == relative_names([s.image_path for s in moved], demo_root)
    assert record["split"]["n_anomaly"] == 2 and record["split"]["split_seed"] == 42
    assert [d["image"] for d in record["defects"]] == [s.image_path for s in moved]
    assert record["p_real_defect"] == 0.5 and record["p_paste"] == 0.2
    assert Detector.load(sup / "coffee" / "model.pt", device="cpu").meta["supervised"] == record

    moved_paths = {s.image_path for s in moved}
    for extra in ([], ["--n-anomaly", "2"]):  # the model's recorded split is the default
        assert eval_cli.main(["--data", demo_root, "--category", "coffee", "--models", str(sup), "--quiet",
                              "--device", "cpu", *extra]) == 0
        report = json.loads((sup / "eval.json").read_text())["categories"]["coffee"]
        scored = {r["path"] for r in report["images"]}
        assert len(scored) == 7 - 2 and scored.isdisjoint(moved_paths)
        assert report["split"]["moved"] == record["split"]["moved"] and report["supervised_model"]
    assert re.search("was trained on the test images .* Evaluate with --n-anomaly 2", cli_error(
        eval_cli.main, ["--data", demo_root, "--models", str(sup), "--category", "coffee", "--n-anomaly", "1"], capsys))

    # the unsupervised baseline, evaluated on the same remaining images
    assert train.main([*common, "--out", str(base)]) == 0
    assert not (base / "coffee" / "supervised.json").exists()
    assert eval_cli.main(["--data", demo_root, "--category", "coffee", "--models", str(base), "--quiet",
                          "--device", "cpu", "--n-anomaly", "2"]) == 0
    report = json.loads((base / "eval.json").read_text())["categories"]["coffee"]
    assert {r["path"] for r in report["images"]} == scored and not report["supervised_model"]


def test_evaluation_split_never_scores_training_defects(demo_root):
    from cpr_engine.cli.eval import evaluation_split

    test = load_split(demo_root, "mvtec", "grass", "test")
    defect = next(s for s in test if s.label)
    meta = {"supervised": {"defects": [{"image": defect.image_path, "mask": defect.mask_path}]}}
    with pytest.raises(ValueError, match="m.pt was trained on 1 of the test images it would be scored on"):
        evaluation_split(meta, test, demo_root, None, None, Path("m.pt"))
    assert evaluation_split(meta, test, demo_root, 4, None, Path("m.pt"))[0] == [s for s in test if not s.label]
    remaining, record = evaluation_split({}, test, demo_root, 2, 7, Path("m.pt"))  # an unsupervised model
    moved = split_defects(test, 2, seed=7)[0]
    assert remaining == split_defects(test, 2, seed=7)[1]
    assert record == {"n_anomaly": 2, "split_seed": 7, "n_test": len(test) - 2,
                      "moved": relative_names([s.image_path for s in moved], demo_root)}
    assert evaluation_split({}, test, demo_root, None, None, Path("m.pt"))[0] == test


def test_cli_supervised_errors(demo_root, defect_dir, tmp_path, capsys):
    from cpr_engine.cli import train

    common = ["--data", demo_root, "--out", str(tmp_path), *TINY_ARGS]
    assert "category 'coffee' has 4 defective test images; cannot move 5" in cli_error(
        train.main, [*common, "--n-anomaly", "5"], capsys)
    assert "--n-anomaly: expected an integer >= 0, got -1" in cli_error(train.main, [*common, "--n-anomaly", "-1"],
                                                                         capsys)
    assert "--defects DIR holds the defects of one category" in cli_error(
        train.main, [*common, "--defects", str(defect_dir)], capsys)
    assert "exclude each other" in cli_error(
        train.main, [*common, "--category", "grass", "--defects", str(defect_dir), "--n-anomaly", "1"], capsys)
    assert "--p-paste: must be a probability in [0, 1], got 1.5" in cli_error(train.main, [*common, "--p-paste", "1.5"],
                                                                              capsys)
    assert not list(tmp_path.iterdir())  # nothing was trained
