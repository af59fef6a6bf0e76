"""cpr-predict in batch: bad files do not stop the run, results are never lost or mixed up."""
import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from cpr_engine.cli import predict
from cpr_engine.data import read_image, write_image
from cpr_engine.detector import Detector
from tests.helpers.cli import cli_error


@pytest.fixture(scope="module")
def model_pt(tiny_detector, tmp_path_factory):
    return tiny_detector.save(tmp_path_factory.mktemp("predict_model") / "model.pt")


@pytest.fixture(scope="module")
def good_pngs(demo_root):
    """Three real test images of the tiny grass category."""
    return sorted(Path(demo_root).glob("grass/test/*/000.png"))[:2] + [Path(demo_root) / "grass/test/good/001.png"]


@pytest.fixture
def mixed_folder(tmp_path, good_pngs):
    """a/c/e: good images; b: random bytes named .png; d: a PNG cut in half."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, src in zip("ace", good_pngs):
        shutil.copy(src, folder / f"{name}.png")
    (folder / "b.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    data = good_pngs[0].read_bytes()
    (folder / "d.png").write_bytes(data[:len(data) // 2])
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == predict.CSV_FIELDS
        return list(reader)


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = predict.main([*args, "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bad_files_are_reported_and_the_good_ones_scored(model_pt, mixed_folder, tiny_detector, tmp_path, capsys):
    out = tmp_path / "out"
    last = cli_error(predict.main, [str(mixed_folder), "--model", str(model_pt), "--out", str(out), "--device", "cpu",
                                    "--quiet", "--batch-size", "2"], capsys)
    assert last == f"cpr-predict: error: scored 3 of 5 images, 2 failed (see the error column of {out}/predictions.csv)"
    rows = read_csv(out / "predictions.csv")
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    for row in rows:
        if Path(row["path"]).stem in ("b", "d"):
            assert row["error"].startswith(f"cannot read image {row['path']!r}")
            assert row["score"] == row["verdict"] == row["overlay"] == ""
        else:
            assert row["error"] == "" and row["verdict"] in ("good", "anomalous")
            # each score is that of its own image, whatever the batch held
            assert float(row["score"]) == pytest.approx(tiny_detector.predict(read_image(row["path"])).score, rel=1e-3)
            assert read_image(row["overlay"]).shape == read_image(row["path"]).shape


def test_bad_files_print_one_error_line_each(model_pt, mixed_folder, tmp_path, capsys):
    code, out, err = run([str(mixed_folder), "--model", str(model_pt), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "Traceback" not in err
    assert [Path(line.split(",")[0]).name for line in out.splitlines()] == ["a.png", "c.png", "e.png"]
    errors = [line for line in err.splitlines() if line.startswith("cpr-predict: error: cannot read image")]
    assert len(errors) == 2 and "b.png" in errors[0] and "d.png" in errors[1]


def test_fail_fast_stops_at_the_first_bad_file_and_writes_no_csv(model_pt, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / predict.MARKER).write_text("")  # an earlier run's folder
    (out / "predictions.csv").write_text("stale\n")
    last = cli_error(predict.main, [str(mixed_folder), "--model", str(model_pt), "--out", str(out), "--device", "cpu",
                                    "--quiet", "--fail-fast"], capsys)
    assert last.startswith("cpr-predict: error: cannot read image") and "b.png" in last
    assert (out / "predictions.csv").read_text() == "stale\n"
    assert not (out / "c.png_overlay.png").exists() and not list(out.glob(".predictions*"))


def test_all_good_exit_0_and_a_stale_csv_is_replaced(model_pt, good_pngs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / predict.MARKER).write_text("")  # an earlier run's folder
    (out / "predictions.csv").write_text("path,score\nold.png,1.0\nolder.png,2.0\n")
    code, stdout, err = run([str(p) for p in good_pngs[:2]] + ["--model", str(model_pt), "--out", str(out)], capsys)
    assert code == 0, err
    assert err.strip().splitlines()[-1] == f"cpr-predict: scored 2 of 2 images -> {out}/predictions.csv"
    rows = read_csv(out / "predictions.csv")
    assert [r["path"] for r in rows] == [str(p) for p in good_pngs[:2]]
    assert all(r["error"] == "" and r["verdict"] in ("good", "anomalous") for r in rows)
    assert len(stdout.splitlines()) == 2
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [predict.MARKER, "predictions.csv"]  # no temporary file


def test_overlay_names_keep_folders_and_extensions():
    paths = [Path("/r/sub/part1.png"), Path("/r/sub/part1.jpg"), Path("/r/a_b/c.png"), Path("/r/a/b_c.png")]
    assert predict.overlay_names(paths) == {
        paths[0]: Path("sub/part1.png_overlay.png"), paths[1]: Path("sub/part1.jpg_overlay.png"),
        paths[2]: Path("a_b/c.png_overlay.png"), paths[3]: Path("a/b_c.png_overlay.png")}
    assert predict.overlay_names([Path("/r/x/1.png")]) == {Path("/r/x/1.png"): Path("1.png_overlay.png")}


def test_same_stem_or_same_flattened_name_gives_distinct_overlays(model_pt, good_pngs, tmp_path, capsys):
    root = tmp_path / "in"
    image = read_image(good_pngs[0])
    # a different size for each file: an overlay of another image would show
    files = {"sub/part1.png": 96, "sub/part1.jpg": 88, "a_b/c.png": 80, "a/b_c.png": 72}
    for rel, height in files.items():
        write_image(root / rel, image[:height])
    out = tmp_path / "out"
    code, _, err = run([str(root / "sub"), str(root / "a_b"), str(root / "a"), "--model", str(model_pt),
                        "--out", str(out)], capsys)
    assert code == 0, err
    rows = {Path(r["path"]).relative_to(root).as_posix(): r for r in read_csv(out / "predictions.csv")}
    assert sorted(rows) == sorted(files)
    for rel, height in files.items():
        assert rows[rel]["overlay"] == str(out / f"{rel}_overlay.png")
        assert read_image(rows[rel]["overlay"]).shape == (height, 96, 3)


@pytest.mark.parametrize("bad_score", [math.nan, math.inf])
def test_a_non_finite_score_is_an_error_never_a_verdict(bad_score, model_pt, good_pngs, tmp_path, capsys, monkeypatch):
    original = Detector.predict

    def broken_on_black(self, images, batch_size=8, color="RGB"):
        """The real predict, but a non-finite score for an all-black image."""
        preds = original(self, images, batch_size, color)
        single = not isinstance(preds, list)
        items, preds = ([images], [preds]) if single else (images, preds)
        preds = [p._replace(score=bad_score) if im.max() == 0 else p for p, im in zip(preds, items)]
        return preds[0] if single else preds

    monkeypatch.setattr(Detector, "predict", broken_on_black)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(good_pngs[0], folder / "a.png")
    write_image(folder / "b.png", np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "out"
    last = cli_error(predict.main, [str(folder), "--model", str(model_pt), "--out", str(out), "--device", "cpu",
                                    "--quiet"], capsys)
    assert "scored 1 of 2 images, 1 failed" in last
    good, bad = read_csv(out / "predictions.csv")
    assert good["error"] == "" and good["verdict"] in ("good", "anomalous")
    assert bad["verdict"] == bad["score"] == "" and bad["error"].startswith(f"non-finite score {bad_score}")
    assert "b.png" in bad["error"]


def test_an_error_of_predict_is_given_to_its_own_file(model_pt, good_pngs, tmp_path, capsys, monkeypatch):
    original = Detector.predict

    def refuses_narrow(self, images, batch_size=8, color="RGB"):
        """The real predict, but a ValueError for any image narrower than 64 pixels."""
        items = [images] if isinstance(images, np.ndarray) else images
        if any(im.shape[1] < 64 for im in items):
            raise ValueError("image too narrow")
        return original(self, images, batch_size, color)

    monkeypatch.setattr(Detector, "predict", refuses_narrow)
    folder = tmp_path / "in"
    image = read_image(good_pngs[0])
    for name, width in (("a", 96), ("b", 40), ("c", 96)):
        write_image(folder / f"{name}.png", image[:, :width])
    out = tmp_path / "out"
    code, stdout, err = run([str(folder), "--model", str(model_pt), "--out", str(out)], capsys)
    assert code == 2
    rows = read_csv(out / "predictions.csv")
    assert [r["error"] for r in rows] == ["", f"{folder / 'b.png'}: image too narrow", ""]
    assert [r["verdict"] != "" for r in rows] == [True, False, True]
    assert len(stdout.splitlines()) == 2
