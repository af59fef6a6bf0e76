"""Nothing of the user's is deleted or silently replaced: cpr-export -o/--force/--triton-repo, cpr-train --out/--force."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

import cpr_engine.data
import cpr_engine.exporter
from cpr_engine.cli import export as export_cli, train
from cpr_engine.detector import Detector
from cpr_engine.errors import OutputError
from cpr_engine.contract import MANIFEST
from cpr_engine.runtime.artifact import check_artifact_target, read_manifest
from cpr_engine.triton_repo import write_repository
from cpr_engine.triton_repo.writer import MODEL_PY
from tests.helpers.cli import cli_error
from tests.test_cli import TINY_ARGS

OLD = 1_000_000_000  # an mtime in 2001: a file rewritten by a test would not keep it


def _user_file(path: Path, data: bytes = b"my own notes\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def _intact(path: Path, data: bytes = b"my own notes\n") -> bool:
    return path.read_bytes() == data and path.stat().st_mtime == OLD


@pytest.fixture
def model_pt(tiny_detector, tmp_path):
    return tiny_detector.save(tmp_path / "runs" / "grass" / "model.pt")


@pytest.fixture
def no_export(monkeypatch):
    """cpr-export must refuse before any work: exporting now is a test failure (an internal error, exit 1)."""
    def export_ran(*_, **__):
        raise AssertionError("export_artifact ran before the output folder was checked")

    monkeypatch.setattr(cpr_engine.exporter, "export_artifact", export_ran)


@pytest.fixture(scope="module")
def earlier_artifact(tiny_detector, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return Path(cpr_engine.exporter.export_artifact(tiny_detector, tmp_path_factory.mktemp("earlier") / "artifact",
                                                  trt="no")["artifact"])


# ------------------------------------------------------------------------------------- cpr-export

def test_export_refuses_a_user_folder_with_or_without_force(model_pt, tmp_path, capsys, no_export):
    mine = tmp_path / "mine"
    notes = _user_file(mine / "notes.txt")
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(mine), "--trt", "no", "--quiet"], capsys)
    assert str(mine) in line and "--force replaces an artifact folder" in line
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(mine), "--trt", "no", "--quiet", "--force"], capsys)
    assert str(mine) in line and "is not an artifact folder" in line and "refusing to replace it" in line
    assert _intact(notes) and sorted(os.listdir(mine)) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine", "runs"]  # no temporary folder left


def test_export_never_replaces_the_models_folder_or_one_above_it(model_pt, tmp_path, capsys, no_export):
    data = model_pt.read_bytes()
    for out in (model_pt.parent, model_pt.parent.parent, tmp_path):
        for force in ([], ["--force"]):
            line = cli_error(export_cli.main, [str(model_pt), "-o", str(out), "--quiet", *force], capsys)
            assert str(out) in line and "holds the model being exported" in line
    # the same folder spelled another way
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(model_pt.parent / ".." / "grass"), "--force"], capsys)
    assert "holds the model being exported" in line
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(model_pt), "--force"], capsys)
    assert "holds the model being exported" in line or "is an existing file" in line
    other = _user_file(tmp_path / "report.txt")
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(other), "--force"], capsys)
    assert str(other) in line and "is an existing file" in line
    assert model_pt.read_bytes() == data and _intact(other)
    assert sorted(os.listdir(model_pt.parent)) == ["model.pt"]


def test_export_replaces_an_earlier_artifact_only_with_force(model_pt, earlier_artifact, tmp_path, capsys,
                                                             monkeypatch):
    out = shutil.copytree(earlier_artifact, tmp_path / "artifact")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["created"] = "2001-01-01T00:00:00Z"  # marks the earlier artifact (the manifest is not checksummed)
    (out / MANIFEST).write_text(json.dumps(manifest))
    before = (out / MANIFEST).read_bytes()

    with monkeypatch.context() as m:  # refused before exporting (and before loading the model)
        m.setattr(cpr_engine.exporter, "export_artifact", lambda *_, **__: pytest.fail("exported"))
        m.setattr(Detector, "load", classmethod(lambda *_, **__: pytest.fail("model loaded")))
        line = cli_error(export_cli.main, [str(model_pt), "-o", str(out), "--trt", "no", "--quiet"], capsys)
    assert str(out) in line and "already exists" in line and "--force replaces an artifact folder" in line
    assert (out / MANIFEST).read_bytes() == before

    assert export_cli.main([str(model_pt), "-o", str(out), "--trt", "no", "--quiet", "--force"]) == 0
    assert f"artifact: {out}" in capsys.readouterr().out
    replaced = read_manifest(out)
    assert replaced["created"] != "2001-01-01T00:00:00Z" and replaced["category"] == "grass"
    assert sorted(os.listdir(tmp_path)) == ["artifact", "runs"]  # no temporary or old folder left

    # the default -o, <model folder>/artifact, is a subfolder of the model's folder: allowed
    assert export_cli.main([str(model_pt), "--trt", "no", "--quiet"]) == 0
    assert read_manifest(model_pt.parent / "artifact")["category"] == "grass" and model_pt.is_file()


def test_export_force_refuses_an_artifact_with_user_files(model_pt, earlier_artifact, tmp_path, capsys, no_export):
    out = shutil.copytree(earlier_artifact, tmp_path / "artifact")
    notes = _user_file(out / "notes.txt")
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(out), "--force"], capsys)
    assert "is not an artifact folder" in line and "notes.txt" in line
    assert _intact(notes)
    read_manifest(out)  # the artifact itself is untouched too


def test_export_force_keeps_non_triton_content_of_the_triton_repo(model_pt, tmp_path, capsys, no_export):
    repo = tmp_path / "repo"
    notes = _user_file(repo / "grass" / "notes.txt")
    line = cli_error(export_cli.main, [str(model_pt), "-o", str(tmp_path / "new"), "--triton-repo", str(repo),
                                       "--force"], capsys)
    assert str(repo / "grass") in line and "refusing to replace it" in line
    assert _intact(notes) and not (tmp_path / "new").exists()
    # a model folder that holds only what cpr-export writes may be replaced
    triton = tmp_path / "triton"
    (triton / "grass" / "1" / "artifact").mkdir(parents=True)
    (triton / "grass" / "1" / "model.py").write_text(MODEL_PY)
    (triton / "grass" / "config.pbtxt").write_text("")
    export_cli.check_triton_target(triton, "grass", force=True)
    export_cli.check_triton_target(repo, "grass", force=False)  # without --force a version is added: nothing deleted


def test_export_api_is_equally_safe(tiny_detector, model_pt, earlier_artifact, tmp_path, monkeypatch):
    from cpr_engine.exporter import artifact as export_module

    monkeypatch.setattr(export_module, "export_onnx", lambda *_, **__: pytest.fail("exported"))  # refused first
    notes = _user_file(tmp_path / "mine" / "notes.txt")
    for force in (False, True):
        with pytest.raises(OutputError, match="mine"):
            export_module.export_artifact(tiny_detector, tmp_path / "mine", trt="no", force=force)
        with pytest.raises(OutputError, match="holds the model being exported"):
            export_module.export_artifact(tiny_detector, model_pt.parent, trt="no", force=force, model_path=model_pt)
    assert _intact(notes)
    # the policy itself
    assert check_artifact_target(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_artifact_target(tmp_path / "empty") == tmp_path / "empty"  # an empty folder needs no --force
    assert check_artifact_target(earlier_artifact, force=True) == earlier_artifact
    assert check_artifact_target(model_pt.parent / "artifact", model_pt) == model_pt.parent / "artifact"
    os.symlink(earlier_artifact, tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        check_artifact_target(tmp_path / "link", force=True)


# ------------------------------------------------------------------------------------- cpr-train

def test_train_refuses_an_existing_model_and_force_replaces_only_the_run_files(demo_root, tmp_path, capsys,
                                                                               monkeypatch):
    runs = tmp_path / "runs"
    args = ["--data", demo_root, "--category", "grass", "--out", str(runs), *TINY_ARGS]
    assert train.main(args) == 0
    run = runs / "grass"
    model = run / "model.pt"
    data = model.read_bytes()
    stale = _user_file(run / "checkpoints" / "lrb_step999999.pt", b"stale checkpoint")
    with open(run / "train.log", "a") as f:
        f.write("STALE LINE\n")
    log_before = (run / "train.log").read_bytes()
    notes = _user_file(run / "notes.txt")

    with monkeypatch.context() as m:  # refused before any image is loaded
        m.setattr(cpr_engine.data, "load_split", lambda *_, **__: pytest.fail("images loaded"))
        line = cli_error(train.main, args, capsys)
        assert str(model) in line and "--force replaces it" in line
        line = cli_error(train.main, [*args, "--category", "coffee", "grass"], capsys)  # any category trained
        assert str(model) in line and not (runs / "coffee").exists()
    assert model.read_bytes() == data and (run / "train.log").read_bytes() == log_before

    def broken_fit(*_, **__):
        raise ValueError("training failed")

    with monkeypatch.context() as m:  # a forced run that fails leaves the old run as it was
        m.setattr(Detector, "fit", broken_fit)
        assert "training failed" in cli_error(train.main, [*args, "--force"], capsys)
    assert model.read_bytes() == data and (run / "train.log").read_bytes() == log_before and stale.exists()

    assert train.main([*args, "--force", "--seed", "1"]) == 0
    assert model.read_bytes() != data and Detector.load(model, device="cpu").config.seed == 1
    assert json.loads((run / "train.json").read_text())["steps"] == 3
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert not stale.exists() and all(p.name.startswith("lrb_step00000") for p in (run / "checkpoints").iterdir())
    log = (run / "train.log").read_text()
    assert "STALE" not in log and [json.loads(line)["step"] for line in log.splitlines()] == [3]
    assert _intact(notes)
    assert sorted(os.listdir(run)) == sorted(["model.pt", "config.json", "train.json", "train.log", "checkpoints",
                                              "notes.txt"])  # no staging folder left


def test_train_force_removes_a_stale_supervised_record(demo_root, tmp_path):
    run = tmp_path / "runs" / "grass"
    _user_file(run / "supervised.json", b"{}")
    _user_file(run / "model.pt", b"an old model")
    assert train.main(["--data", demo_root, "--category", "grass", "--out", str(tmp_path / "runs"), *TINY_ARGS,
                       "--force"]) == 0
    assert not (run / "supervised.json").exists() and Detector.load(run / "model.pt", device="cpu").meta["category"] == "grass"


def test_train_refuses_an_out_that_is_a_file(demo_root, tmp_path, capsys):
    out = _user_file(tmp_path / "runs")
    line = cli_error(train.main, ["--data", demo_root, "--category", "grass", "--out", str(out), *TINY_ARGS,
                                  "--force"], capsys)
    assert str(out) in line and "existing file" in line and _intact(out)


# ------------------------------------------------------------------------- Triton repository writer

def _tree(folder: Path) -> dict:
    """Every file and folder below ``folder``: relative path -> (bytes or None for a folder, mtime)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes(), p.stat().st_mtime)
            for p in sorted(folder.rglob("*"))}


def _other_category(artifact: Path, folder: Path, category: str) -> Path:
    """A copy of ``artifact`` under another category (manifest and its digest rewritten consistently)."""
    copy = Path(shutil.copytree(artifact, folder))
    manifest = json.loads((copy / MANIFEST).read_text())
    data = json.dumps({**manifest, "category": category}).encode()
    (copy / MANIFEST).write_bytes(data)
    (copy / "manifest.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {MANIFEST}\n")
    return copy


@pytest.mark.parametrize("case", ["user files", "ensemble", "own python model", "notes in a version",
                                  "notes in the artifact", "config only"])
def test_triton_writer_force_replaces_no_folder_it_did_not_write(earlier_artifact, tmp_path, case):
    repo = tmp_path / "repo"
    model_dir = repo / "grass"
    if case == "user files":
        _user_file(model_dir / "notes.txt")
        _user_file(model_dir / "data" / "scan.bin", b"\x00\x01")
    else:  # what write_repository writes, with one thing of the user's in it
        write_repository([earlier_artifact], repo)
        if case == "ensemble":  # a Triton model of the user's: config.pbtxt and an empty version folder
            shutil.rmtree(model_dir / "1")
            (model_dir / "1").mkdir()
        elif case == "own python model":
            (model_dir / "1" / "model.py").write_text("import my_backend\n")
        elif case == "notes in a version":
            _user_file(model_dir / "1" / "notes.txt")
        elif case == "notes in the artifact":
            _user_file(model_dir / "1" / "artifact" / "notes.txt")
        else:
            shutil.rmtree(model_dir / "1")
        os.utime(model_dir / "config.pbtxt", (OLD, OLD))
    before = _tree(repo)
    with pytest.raises(OutputError, match=f"{model_dir} is not a Triton model folder of cpr-export.*refusing"):
        write_repository([earlier_artifact], repo, force=True)
    assert _tree(repo) == before  # byte for byte, nothing added


def test_triton_writer_checks_every_model_folder_before_writing_any(earlier_artifact, tmp_path):
    carpet = _other_category(earlier_artifact, tmp_path / "carpet_artifact", "carpet")
    repo = tmp_path / "repo"
    notes = _user_file(repo / "carpet" / "notes.txt")
    with pytest.raises(OutputError, match=str(repo / "carpet")):
        write_repository([earlier_artifact, carpet], repo, force=True)
    assert sorted(p.name for p in repo.iterdir()) == ["carpet"] and _intact(notes)  # no grass/ written first
    with pytest.raises(OutputError, match="is an existing file, not a folder"):
        write_repository([earlier_artifact], notes, force=True)
    assert _intact(notes)


def test_triton_writer_force_replaces_its_own_model_folder_or_an_empty_one(earlier_artifact, tmp_path):
    repo = tmp_path / "repo"
    assert write_repository([earlier_artifact, earlier_artifact], repo) == [repo / "grass" / "1", repo / "grass" / "2"]
    assert write_repository([earlier_artifact], repo, force=True) == [repo / "grass" / "1"]
    assert sorted(os.listdir(repo / "grass")) == ["1", "config.pbtxt"]
    assert read_manifest(repo / "grass" / "1" / "artifact")["category"] == "grass"
    shutil.rmtree(repo / "grass")
    (repo / "grass").mkdir()
    assert write_repository([earlier_artifact], repo, force=True) == [repo / "grass" / "1"]
    # without force nothing is replaced: a version is added beside the user's files
    notes = _user_file(tmp_path / "other" / "grass" / "notes.txt")
    assert write_repository([earlier_artifact], tmp_path / "other") == [tmp_path / "other" / "grass" / "1"]
    assert _intact(notes)


def test_fit_run_dir_of_the_user_is_refused_before_any_work(demo_root, tmp_path):
    """Detector.fit(run_dir=...) wrote config.json, train.log and checkpoints/ into any folder; now a folder
    it did not write is refused before training, and one it wrote takes a second fit."""
    from tests.conftest import TINY

    options = dict(TINY)
    variant = options.pop("variant")
    user = tmp_path / "mine"
    config, log = _user_file(user / "config.json", b"{}"), _user_file(user / "train.log")
    with pytest.raises(OutputError, match="run_dir .*mine holds files that Detector.fit did not write"):
        Detector(variant, device="cpu", **options).fit(f"{demo_root}/grass", run_dir=str(user))
    assert _intact(config, b"{}") and _intact(log) and sorted(os.listdir(user)) == ["config.json", "train.log"]
    run = tmp_path / "run"
    for _ in range(2):  # new, then its own
        Detector(variant, device="cpu", **options).fit(f"{demo_root}/grass", run_dir=str(run))
    assert {"config.json", "train.log", ".cpr-fit"} <= set(os.listdir(run))


def test_save_leaves_a_user_file_named_like_a_temporary_file(tiny_detector, tmp_path):
    """save('m.pt') staged the model in 'm.pt.tmp', replacing a user's file of that name."""
    theirs = _user_file(tmp_path / "m.pt.tmp")
    tiny_detector.save(tmp_path / "m.pt")
    assert _intact(theirs) and sorted(os.listdir(tmp_path)) == ["m.pt", "m.pt.tmp"]
