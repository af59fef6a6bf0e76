"""The tools replace only their own outputs: cpr-predict --out, --report (predict and eval), cpr-eval --out,
cpr-bench --json. Anything else is refused before any work (exit status 2, one line naming it), byte for
byte intact; a rerun into the tool's own outputs still works. File names cannot forge output lines."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from cpr_engine.cli import bench as bench_cli, eval as eval_cli, predict
from cpr_engine.outputs import shown_name
from cpr_engine.detector import Detector
from cpr_engine.report import GENERATOR
from tests.helpers.cli import cli_error

MINE = b"my own file\n"


@pytest.fixture(scope="module")
def model_pt(tiny_detector, tmp_path_factory):
    return tiny_detector.save(tmp_path_factory.mktemp("outputs_model") / "model.pt")


@pytest.fixture
def images(demo_root, tmp_path):
    """A folder with two real test images of the tiny grass category, a.png and b.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, src in zip("ab", sorted(Path(demo_root).glob("grass/test/good/*.png"))):
        shutil.copy(src, folder / f"{name}.png")
    return folder


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: a refusal must come before it."""
    monkeypatch.setattr(Detector, "load", lambda *_, **__: pytest.fail("a model was loaded before the refusal"))


def _predict(args: list, capsys) -> tuple[int, str, str]:
    code = predict.main([*map(str, args), "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# cpr-predict --out

def test_predict_refuses_a_users_folder(model_pt, images, tmp_path, capsys, no_model_load):
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "predictions.csv").write_bytes(MINE)
    (user / "a.png_overlay.png").write_bytes(MINE)
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(user)], capsys)
    assert f"--out {user} holds files that cpr-predict did not write" in line
    assert sorted(p.name for p in user.iterdir()) == ["a.png_overlay.png", "predictions.csv"]
    assert (user / "predictions.csv").read_bytes() == MINE and (user / "a.png_overlay.png").read_bytes() == MINE
    (user / "predictions.csv").unlink()
    (user / "a.png_overlay.png").unlink()
    (user / "file").write_bytes(MINE)
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(user / "file")], capsys)
    assert f"--out {user / 'file'} exists and is not a folder" in line and (user / "file").read_bytes() == MINE


def test_predict_reruns_into_its_own_folder(model_pt, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict([images, "--model", model_pt, "--out", out], capsys)[0] == 0
    assert (out / predict.MARKER).is_file() and (out / "b.png_overlay.png").is_file()
    code, stdout, err = _predict([images / "a.png", "--model", model_pt, "--out", out], capsys)
    assert code == 0, err
    with open(out / "predictions.csv", newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == [str(images / "a.png")]  # the earlier CSV replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _predict([images, "--model", model_pt, "--out", empty], capsys)[0] == 0


def test_predict_refuses_a_symlink_in_its_own_folder(model_pt, images, tmp_path, capsys, monkeypatch):
    """A link put into an earlier run's folder is neither followed nor replaced."""
    out = tmp_path / "out"
    assert _predict([images, "--model", model_pt, "--out", out], capsys)[0] == 0
    precious = tmp_path / "precious.png"
    precious.write_bytes(MINE)
    (out / "a.png_overlay.png").unlink()
    (out / "a.png_overlay.png").symlink_to(precious)
    monkeypatch.setattr(Detector, "load", lambda *_, **__: pytest.fail("a model was loaded before the refusal"))
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(out)], capsys)
    assert f"symbolic link that cpr-predict did not create: {out / 'a.png_overlay.png'}" in line
    assert precious.read_bytes() == MINE and (out / "a.png_overlay.png").is_symlink()


def test_file_names_cannot_forge_lines(model_pt, images, tmp_path, capsys):
    forged = images / "defect.png,0.0000,73.8743,good\nx.png"
    (images / "a.png").rename(forged)
    (images / "bad\nx.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, stdout, err = _predict([images, "--model", model_pt, "--out", out], capsys)
    assert code == 2
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{images / 'b.png'},")
    assert lines[1].startswith(repr(str(forged)) + ",")  # quoted, the newline escaped
    assert not any(line.startswith("x.png") for line in stdout.splitlines() + err.splitlines())
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(images / "b.png"), str(images / "bad\nx.png"), str(forged)]
    assert rows[2]["verdict"] in ("good", "anomalous") and Path(rows[2]["overlay"]).is_file()
    assert rows[1]["error"] and rows[1]["verdict"] == ""


def test_shown_name_escapes_only_what_could_forge():
    assert shown_name("sub/part 1.png") == "sub/part 1.png"
    assert shown_name("a\nb.png") == "'a\\nb.png'" and shown_name("a,b.png") == "'a,b.png'"
    assert shown_name("\x1b[2Ja.png") == "'\\x1b[2Ja.png'"


# --report (predict and eval)

def _users_report(tmp_path) -> Path:
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "index.html").write_bytes(b"<html><body>my hand-made report</body></html>\n")
    return folder


def test_predict_refuses_a_users_index_html(model_pt, images, tmp_path, capsys, no_model_load):
    folder = _users_report(tmp_path)
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(tmp_path / "out"),
                                    "--report", str(folder)], capsys)
    assert f"--report {folder}: its index.html is not one a cpr-engine report wrote" in line
    assert (folder / "index.html").read_bytes() == b"<html><body>my hand-made report</body></html>\n"
    assert not (tmp_path / "out").exists()


def test_eval_refuses_a_users_index_html(tiny_detector, demo_root, tmp_path, capsys, no_model_load):
    runs = tmp_path / "runs"
    tiny_detector.save(runs / "grass" / "model.pt")
    folder = _users_report(tmp_path)
    line = cli_error(eval_cli.main, ["--data", str(demo_root), "--category", "grass", "--models", str(runs),
                                     "--report", str(folder), "--quiet", "--device", "cpu"], capsys)
    assert f"--report {folder}: its index.html is not one a cpr-engine report wrote" in line
    assert (folder / "index.html").read_bytes() == b"<html><body>my hand-made report</body></html>\n"
    assert not (runs / "eval.json").exists()


def test_predict_rewrites_its_own_report(model_pt, images, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "report"
    for _ in range(2):
        code, _, err = _predict([images, "--model", model_pt, "--out", tmp_path / "out", "--no-overlays",
                                 "--report", folder], capsys)
        assert code == 0, err
        assert GENERATOR in (folder / "index.html").read_text()


# cpr-eval --out

@pytest.mark.parametrize("name,data", [("eval.json", b'{"rows": "my own notes"}\n'), ("eval.json", b"not json\n"),
                                       ("eval.csv", b"category,score\r\nmine,1\r\n")])
def test_eval_refuses_a_users_result_file(name, data, tiny_detector, demo_root, tmp_path, capsys, no_model_load):
    runs = tmp_path / "runs"
    tiny_detector.save(runs / "grass" / "model.pt")
    (runs / name).write_bytes(data)
    line = cli_error(eval_cli.main, ["--data", str(demo_root), "--category", "grass", "--models", str(runs),
                                     "--quiet", "--device", "cpu"], capsys)
    assert line == (f"cpr-eval: error: {runs / name} exists and was not written by cpr-eval; move it away or give "
                    f"another --out")
    assert (runs / name).read_bytes() == data and len(list(runs.glob("eval.*"))) == 1


def test_eval_replaces_its_own_result_files(tiny_detector, demo_root, tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tiny_detector.save(runs / "grass" / "model.pt")
    for _ in range(2):
        assert eval_cli.main(["--data", str(demo_root), "--category", "grass", "--models", str(runs), "--out",
                              str(out), "--quiet", "--device", "cpu"]) == 0
    assert "image_AUROC" in capsys.readouterr().out
    assert json.loads((out / "eval.json").read_text())[eval_cli.FORMAT_KEY] == 1
    with open(out / "eval.csv", newline="") as f:
        assert [r["category"] for r in csv.DictReader(f)] == ["grass"]


# cpr-bench --json

def _bench_args(model_pt, demo_root, json_path) -> list[str]:
    return ["--model", str(model_pt), "--runs", "1", "--warmup", "0", "--images", f"{demo_root}/grass/test/good",
            "--json", str(json_path), "--quiet"]


@pytest.mark.needs_native
@pytest.mark.parametrize("data", [b'{"latency_ms": 1}\n', b"my own notes\n"])
def test_bench_refuses_a_users_file(data, model_pt, demo_root, tmp_path, capsys, monkeypatch):
    target = tmp_path / "bench.json"
    target.write_bytes(data)
    monkeypatch.setattr(bench_cli, "load_detector", lambda *_: pytest.fail("benchmarked before the refusal"))
    line = cli_error(bench_cli.main, _bench_args(model_pt, demo_root, target), capsys)
    assert line == f"cpr-bench: error: {target} exists and was not written by cpr-bench; move it away or give " \
                   f"another --json"
    assert target.read_bytes() == data and capsys.readouterr().out == ""


@pytest.mark.needs_native
def test_bench_replaces_its_own_report(model_pt, demo_root, tmp_path, capsys):
    target = tmp_path / "bench.json"
    for _ in range(2):
        assert bench_cli.main(_bench_args(model_pt, demo_root, target)) == 0
    assert json.loads(target.read_text())[bench_cli.FORMAT_KEY] == 1


# outputs that cannot be written at all

def test_outputs_below_a_file_are_refused_before_any_work(model_pt, images, demo_root, tmp_path, capsys,
                                                            monkeypatch, no_model_load):
    """An --out, --report or --json whose folder cannot exist (a regular file is in its path) is refused first,
    not after the scoring or timing it would have thrown away."""
    blocker = tmp_path / "a_file"
    blocker.write_bytes(MINE)
    below = blocker / "sub"
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(below)], capsys)
    assert f"--out {below}: {blocker} is not a folder" in line
    line = cli_error(predict.main, [str(images), "--model", str(model_pt), "--out", str(tmp_path / "out"),
                                    "--report", str(below)], capsys)
    assert f"--report {below}: {blocker} is not a folder" in line
    line = cli_error(eval_cli.main, ["--data", str(demo_root), "--category", "grass", "--models", str(tmp_path),
                                     "--out", str(below), "--quiet", "--device", "cpu"], capsys)
    assert f"--out {below}: {blocker} is not a folder" in line
    monkeypatch.setattr(bench_cli, "load_detector", lambda *_: pytest.fail("benchmarked before the refusal"))
    line = cli_error(bench_cli.main, _bench_args(model_pt, demo_root, below / "bench.json"), capsys)
    assert f"--json {below}: {blocker} is not a folder" in line
    assert blocker.read_bytes() == MINE and not (tmp_path / "out").exists()
