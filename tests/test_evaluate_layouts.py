"""Evaluation over the newer dataset layouts equals evaluation over the MVTec AD layout of the same data."""
import shutil
from pathlib import Path

import pytest

from cpr_engine.data import load_split, read_mask, write_mask
from cpr_engine.evaluate import evaluate_samples
from tests.helpers.cases import made_dir


def test_mvtec_loco_evaluates_as_the_union_of_its_masks(tiny_detector, demo_root, tmp_path):
    """The demo category rewritten in the LOCO layout, each mask split into two region files: the
    metrics equal those of the MVTec AD layout with whole masks."""
    src, cat = Path(demo_root) / "coffee", tmp_path / "loco" / "coffee"
    shutil.copytree(src / "train", cat / "train")
    shutil.copytree(src / "test" / "good", cat / "test" / "good")
    for image in sorted(p for p in (src / "test").glob("*/*.png") if p.parent.name != "good"):
        kind = f"{image.parent.name}_anomalies"
        shutil.copy(image, made_dir(cat / "test" / kind) / image.name)
        whole = read_mask(src / "ground_truth" / image.parent.name / f"{image.stem}_mask.png")
        top, bottom = whole.copy(), whole.copy()
        top[whole.shape[0] // 2:], bottom[:whole.shape[0] // 2] = False, False
        regions = made_dir(cat / "ground_truth" / kind / image.stem)
        write_mask(regions / "000.png", top)
        write_mask(regions / "001.png", bottom)
    loco = evaluate_samples(tiny_detector, load_split(tmp_path / "loco", "mvtec_loco", "coffee", "test"))["metrics"]
    mvtec = evaluate_samples(tiny_detector, load_split(demo_root, "mvtec", "coffee", "test"))["metrics"]
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "pixel_AP"):
        assert loco[key] == pytest.approx(mvtec[key], abs=1e-9), key


def test_metrics_by_defect_type(tiny_detector, demo_root, tmp_path, capsys):
    """evaluate_samples splits the metrics by defect type (each type with the good images); cpr-eval
    --by-type prints those rows and keeps them out of the mean."""
    from cpr_engine.cli.eval import main as eval_main

    samples = load_split(demo_root, "mvtec", "coffee", "test")
    result = evaluate_samples(tiny_detector, samples, by_type=True)
    assert evaluate_samples(tiny_detector, samples)["by_type"] == {}  # only when asked: a pass per type
    types = sorted({s.defect_type for s in samples if s.label})
    assert sorted(result["by_type"]) == types and len(types) > 1
    for t in types:
        alone = [s for s in samples if s.label == 0 or s.defect_type == t]
        assert result["by_type"][t] == pytest.approx(evaluate_samples(tiny_detector, alone)["metrics"]), t
    runs = tmp_path / "runs"
    tiny_detector.save(runs / "coffee" / "model.pt")
    assert eval_main(["--data", str(demo_root), "--category", "coffee", "--models", str(runs), "--by-type",
                      "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert all(f"coffee/{t}" in printed for t in types) and "mean" not in printed
