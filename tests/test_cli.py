import csv
import json
from pathlib import Path

import pytest

from cpr_engine.cli import bench, demo, eval as eval_cli, export as export_cli, predict, serve, train
from cpr_engine.data import read_image
from tests.helpers.cli import cli_error

TINY_ARGS = ["--variant", "faster", "--image-size", "64", "--steps", "3", "--train-batch", "4", "--top-k", "3",
             "--quiet", "--device", "cpu"]


@pytest.mark.parametrize("module", [train, eval_cli, predict, demo, export_cli, bench, serve])
def test_every_flag_has_help(module, capsys):
    parser = module.build_parser()
    for action in parser._actions:
        assert action.help, f"{parser.prog}: {action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0 and parser.prog in capsys.readouterr().out


def test_train_takes_the_threshold_from_validation_images(demo_root, tmp_path, capsys):
    """MVTec AD 2: the threshold comes from the scores of validation/good (kept out of training): with
    fewer than 10 of them, their largest."""
    import shutil

    from cpr_engine import Detector

    cat = tmp_path / "ad2" / "grass"
    train_images = sorted(Path(demo_root, "grass", "train", "good").iterdir())
    for i, image in enumerate(train_images):
        split = "validation" if i < 3 else "train"
        (cat / split / "good").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, cat / split / "good" / image.name)
    shutil.copytree(Path(demo_root, "grass", "test", "good"), cat / "test_public" / "good")
    runs = tmp_path / "runs"
    assert train.main(["--data", str(tmp_path / "ad2"), "--out", str(runs), *TINY_ARGS]) == 0
    assert "max of 3 scores of good held-out images" in capsys.readouterr().out
    meta = json.loads((runs / "grass" / "train.json").read_text())
    assert meta["n_train"] == len(train_images) - 3
    det = Detector.load(runs / "grass" / "model.pt", device="cpu")
    scores = [p.score for p in det.predict([str(p) for p in sorted((cat / "validation" / "good").iterdir())])]
    assert det.threshold == pytest.approx(max(scores), rel=1e-5)
    assert meta["threshold_source"] == "max of 3 scores of good held-out images"
    assert meta["threshold"] != pytest.approx(max(meta["loo_scores"]))  # not the leave-one-out rule


def test_train_refuses_bad_validation_images(demo_root, tmp_path, capsys):
    """An empty or unreadable MVTec AD 2 validation/good: one line naming it, exit 2, no model written."""
    import shutil

    cat = tmp_path / "ad2" / "grass"
    shutil.copytree(Path(demo_root, "grass", "train", "good"), cat / "train" / "good")
    shutil.copytree(Path(demo_root, "grass", "test", "good"), cat / "test_public" / "good")
    (cat / "validation" / "good").mkdir(parents=True)
    runs = tmp_path / "runs"
    args = ["--data", str(tmp_path / "ad2"), "--out", str(runs), *TINY_ARGS]
    line = cli_error(train.main, args, capsys)
    assert "MVTec AD 2 validation folder" in line and "no images" in line
    (cat / "validation" / "good" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    line = cli_error(train.main, args, capsys)
    assert "000.png" in line
    assert not (runs / "grass" / "model.pt").exists()


def test_train_with_raw_descriptors_writes_strict_json(demo_root, tmp_path, capsys):
    """No local metric trained (raw descriptors): no "0 steps, loss nan" line and no NaN in train.json,
    which strict JSON readers (jq, browsers) refuse."""
    runs = tmp_path / "runs"
    at = TINY_ARGS.index("--steps")
    args = TINY_ARGS[:at] + TINY_ARGS[at + 2:] + ["--descriptor", "raw"]
    assert train.main(["--data", demo_root, "--category", "coffee", "--out", str(runs), *args]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("coffee: ") and "no local-metric training" in line and "nan" not in line.lower()
    meta = json.loads((runs / "coffee" / "train.json").read_text(),
                      parse_constant=lambda name: pytest.fail(f"train.json holds {name}"))
    assert meta["steps"] == 0 and meta["final_loss"] is None and meta["descriptor"] == "raw"


def test_train_eval_predict_on_mvtec_layout(demo_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert train.main(["--data", demo_root, "--out", str(runs), *TINY_ARGS]) == 0
    for cat in ("coffee", "grass"):
        assert (runs / cat / "model.pt").is_file() and (runs / cat / "train.log").is_file()
        meta = json.loads((runs / cat / "train.json").read_text())
        # texture or object is not read from the category name: the foreground is fitted for both
        assert meta["steps"] == 3 and meta["is_texture"] is False
        assert meta["descriptor"] in ("learned", "raw") and len(meta["windows"]) == 2
        assert json.loads((runs / cat / "config.json").read_text())["descriptor_dim"] == 16

    assert eval_cli.main(["--data", demo_root, "--models", str(runs), "--quiet", "--device", "cpu",
                          "--baseline", "knn"]) == 0
    table = capsys.readouterr().out
    assert "image_AUROC" in table and "mean[1-NN]" in table
    report = json.loads((runs / "eval.json").read_text())
    assert [r["category"] for r in report["rows"]] == ["coffee", "coffee[1-NN]", "grass", "grass[1-NN]", "mean",
                                                      "mean[1-NN]"]
    assert report["categories"]["grass[1-NN]"]["baseline"] == "knn"
    for row in report["rows"]:
        for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "pixel_AP"):
            assert 0.0 <= row[key] <= 1.0
    assert len(report["categories"]["grass"]["images"]) == 7
    with open(runs / "eval.csv") as f:
        assert len(list(csv.DictReader(f))) == 6

    out = tmp_path / "pred"
    test_dir = f"{demo_root}/grass/test"
    assert predict.main([f"{test_dir}/good", f"{test_dir}/*/00[0].png", "--model", str(runs / "grass" / "model.pt"),
                         "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len({r["path"] for r in rows}) >= 3  # folder + glob, de-duplicated
    overlay = read_image(rows[0]["overlay"])
    assert overlay.shape == read_image(rows[0]["path"]).shape
    assert {r["verdict"] for r in rows} <= {"good", "anomalous"}
    assert len({r["overlay"] for r in rows}) == len(rows)  # same stem in two folders: distinct overlays
    assert predict.overlay_names([Path("/a/x/1.png"), Path("/a/y/1.png")]) == {
        Path("/a/x/1.png"): Path("x/1.png_overlay.png"), Path("/a/y/1.png"): Path("y/1.png_overlay.png")}


def test_cli_errors(demo_root, tmp_path, capsys):
    """Bad input: one line naming the problem, exit status 2, no traceback."""
    assert "categories ['nope'] not found" in cli_error(
        train.main, ["--data", demo_root, "--category", "nope", "--out", str(tmp_path), *TINY_ARGS], capsys)
    assert "no model file" in cli_error(
        eval_cli.main, ["--data", demo_root, "--models", str(tmp_path / "none"), "--quiet"], capsys)
    assert "no model file" in cli_error(predict.main, ["--model", str(tmp_path / "m.pt"), str(tmp_path)], capsys)
    with pytest.raises(SystemExit, match="no such file, folder or matching pattern"):
        predict.expand_inputs([str(tmp_path / "nothing*.png")])
    assert "missing" in cli_error(train.main, ["--data", str(tmp_path / "missing"), "--out", str(tmp_path),
                                               *TINY_ARGS], capsys)
    assert "--batch-size" in cli_error(predict.main, ["--batch-size", "-1", str(tmp_path / "x.png")], capsys)


def test_cli_debug_shows_the_traceback_and_internal_errors_say_so(demo_root, tmp_path, capsys, monkeypatch):
    args = ["--data", demo_root, "--models", str(tmp_path / "none"), "--quiet"]
    with pytest.raises(FileNotFoundError, match="no model file"):
        eval_cli.main([*args, "--debug"])

    def broken(*_, **__):
        raise RuntimeError("a bug")

    monkeypatch.setattr(eval_cli, "eval_categories", broken)
    assert eval_cli.main(args) == 1
    err = capsys.readouterr().err
    assert "internal error (RuntimeError: a bug)" in err and "--debug" in err and "Traceback" not in err


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--steps", "-2"), ("--train-batch", "0"),
                                        ("--time-budget", "0"), ("--time-budget", "nan"), ("--top-k", "x")])
def test_train_refuses_impossible_values_before_any_work(flag, value, tmp_path, capsys):
    line = cli_error(train.main, ["--data", str(tmp_path / "never-read"), "--out", str(tmp_path / "out"), flag, value],
                     capsys)
    assert flag in line and not (tmp_path / "out").exists()


def test_train_summary_names_the_foreground_mode():
    rows = [{"descriptor": "raw", "windows": [9, 5], "foreground": fg, "location_offset": True, "mean": mean}
            for fg, mean in (("map", 0.70), ("score", 0.75), ("off", 0.74))]
    meta = {"descriptor": "raw", "foreground": "score", "location_offset": True, "windows": [9, 5],
            "selection": rows, "n_validation": 4}
    line = train.choice_summary(meta)
    assert line.startswith("descriptor raw, foreground on the image score only, location offset on, windows [9, 5]")
    assert "raw/fg score/lo on/windows [9, 5] 0.750" in line and "raw/fg off/lo on/windows [9, 5] 0.740" in line
    assert "foreground off," in train.choice_summary({**meta, "foreground": "off", "selection": []})


@pytest.mark.slow
def test_demo_summary_reads_the_mean_rows():
    rows = [{"category": "a", "image_AUROC": 1.0}, {"category": "a[1-NN]", "image_AUROC": 0.9},
            {"category": "b", "image_AUROC": 0.8}, {"category": "b[1-NN]", "image_AUROC": 0.7},
            {"category": "mean", "image_AUROC": 0.9}, {"category": "mean[1-NN]", "image_AUROC": 0.8}]
    assert demo.summary(rows, ["a", "b"]) == "mean I-AUROC 90.0 (plain 1-NN over the same backbone: 80.0)"
    assert demo.summary(rows[:2], ["a"]) == "mean I-AUROC 100.0 (plain 1-NN over the same backbone: 90.0)"


def test_demo_end_to_end(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--categories", "grass", "--variant", "faster", "--steps", "2",
                      "--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[5/5]" in out and "pixel_AUPRO" in out
    assert (tmp_path / "runs" / "eval.json").is_file()
    assert (tmp_path / "report" / "index.html").is_file() and f"report {tmp_path / 'report' / 'index.html'}" in out
    assert (tmp_path / "artifacts" / "grass" / "manifest.json").is_file()
    assert len(list((tmp_path / "predictions" / "grass").rglob("*_overlay.png"))) == 4
