import json

import numpy as np
import pytest

from cpr_engine.cli import export as export_cli
from cpr_engine.errors import OutputError
from cpr_engine.exporter import export_artifact
from cpr_engine.contract import GRAPH_OUTPUTS
from cpr_engine.runtime.artifact import (ARTIFACT_FORMAT_VERSION, MANIFEST, ArtifactError, add_file, load_array,
                                         read_manifest)

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def artifact(tiny_detector, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "artifact"
    report = export_artifact(tiny_detector, out, trt="no")
    return out, report


def test_artifact_contents_and_manifest(artifact, tiny_detector):
    out, report = artifact
    manifest = read_manifest(out)
    assert manifest["format_version"] == ARTIFACT_FORMAT_VERSION
    assert manifest["top_k"] == 3 and manifest["windows"] == list(tiny_detector.config.windows)
    assert manifest["image_size"] == 64
    assert manifest["threshold"] == pytest.approx(tiny_detector.threshold)
    assert manifest["taps"] == list(tiny_detector.model.backbone.tap_names)
    assert set(manifest["files"]) == {"network.onnx", "network_opencv.onnx", "bank_4.npy", "bank_8.npy",
                                      "train_hists.npy", "bank_fg.npy", "centers.npy", "memory_4.npy",
                                      "memory_8.npy", "location_offset.npy"}
    np.testing.assert_array_equal(load_array(out, "centers"), tiny_detector.model.centers.numpy())
    assert all(v < 1e-3 for v in report["opencv_graph_max_error"].values())
    bank = load_array(out, "bank_4")
    assert bank.dtype == np.float32 and bank.shape == tuple(tiny_detector.model.bank_4.shape)
    np.testing.assert_array_equal(bank, tiny_detector.model.bank_4.numpy())
    assert report["tensorrt"].startswith("no plan")
    errors = report["onnx_max_error"]
    assert set(errors) == set(GRAPH_OUTPUTS) == {"desc_4", "desc_8", "foreground", "feat_4"}
    assert all(error < 1e-3 for error in errors.values())


def test_export_leaves_model_untouched(tiny_detector, demo_root, tmp_path):
    from cpr_engine.data import read_image
    image = read_image(f"{demo_root}/grass/test/good/000.png")
    before = tiny_detector.predict(image).score
    export_artifact(tiny_detector, tmp_path / "a", trt="no")
    assert tiny_detector.predict(image).score == before  # the tracer must not update BN statistics


def test_fp16_export(tiny_detector, tmp_path):
    report = export_artifact(tiny_detector, tmp_path / "a16", fp16=True, trt="no")
    manifest = read_manifest(report["artifact"])
    assert manifest["bank_dtype"] == "float16" and "network_fp16.onnx" in manifest["files"]
    assert load_array(report["artifact"], "bank_4").dtype == np.float16
    import onnx
    graph = onnx.load(f"{report['artifact']}/network_fp16.onnx").graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_refuses_to_overwrite_and_replaces_with_force(artifact, tiny_detector):
    out, _ = artifact
    before = (out / MANIFEST).read_text()
    with pytest.raises(OutputError, match="--force"):
        export_artifact(tiny_detector, out, trt="no")
    assert (out / MANIFEST).read_text() == before  # nothing already written is lost
    with pytest.raises(RuntimeError, match="required"):
        export_artifact(tiny_detector, out.parent / "needs_trt", trt="yes")
    assert not (out.parent / "needs_trt").exists()


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_bad_artifacts_are_refused(artifact, tmp_path):
    out, _ = artifact
    tampered = _copy(out, tmp_path / "tampered")
    data = bytearray((tampered / "bank_8.npy").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "bank_8.npy").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for bank_8.npy"):
        read_manifest(tampered)

    missing = _copy(out, tmp_path / "missing")
    (missing / "network.onnx").unlink()
    with pytest.raises(ArtifactError, match="network.onnx listed in the manifest is missing"):
        read_manifest(missing)

    newer = _copy(out, tmp_path / "newer")
    manifest = json.loads((newer / MANIFEST).read_text())
    manifest["format_version"] = ARTIFACT_FORMAT_VERSION + 1
    (newer / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"format version {ARTIFACT_FORMAT_VERSION + 1}"):
        read_manifest(newer)

    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_manifest(tmp_path / "empty")
    broken = _copy(out, tmp_path / "broken")
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        read_manifest(broken)
    other = _copy(out, tmp_path / "other")
    (other / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="format tag"):
        read_manifest(other)


def test_runtime_artifact_module_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, cpr_engine.runtime.artifact; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpr_export_cli(tiny_detector, demo_root, tmp_path, capsys):
    model = tiny_detector.save(tmp_path / "model.pt")
    assert export_cli.main([str(model), "--fp16", "--trt", "no", "--check-images", f"{demo_root}/grass/test/good",
                            "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ONNX vs PyTorch max |error|: desc_4" in out and "TensorRT: no plan" in out
    assert read_manifest(tmp_path / "artifact")["bank_dtype"] == "float16"


def test_add_file_records_checksum(artifact, tmp_path):
    out = _copy(artifact[0], tmp_path / "with_plan")
    plan = tmp_path / "fake.plan"
    plan.write_bytes(b"engine bytes")
    manifest = add_file(out, "network.plan", plan)
    assert read_manifest(out)["files"]["network.plan"] == manifest["files"]["network.plan"]
    assert manifest["files"]["network.plan"]["bytes"] == 12
    with pytest.raises(ArtifactError, match="cannot add a file named"):
        add_file(out, "../evil", plan)


def test_build_plan_script_says_why_not(artifact, capsys):
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "build_plan", pathlib.Path(__file__).resolve().parents[1] / "export" / "build_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from cpr_engine.exporter.tensorrt import tensorrt_unavailable_reason
    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present: the plan would really be built")
    assert module.main([str(artifact[0])]) == 2
    assert "cannot build a TensorRT plan here" in capsys.readouterr().err
