"""The artifact contract is defined once per language: cpr_engine/contract.py and csrc/runtime/contract.h
name the same files, graph tensors and arrays, and what the exporter writes follows them."""
import ast
import dataclasses
import re
from pathlib import Path

import pytest

from cpr_engine import contract

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "runtime" / "contract.h"
MANIFEST_HEADER = ROOT / "csrc" / "runtime" / "manifest.h"

# C++ constant -> Python constant (every constant of either file must be here)
PAIRS = {
    "kArtifactFormat": "ARTIFACT_FORMAT", "kArtifactFormatVersion": "ARTIFACT_FORMAT_VERSION",
    "kArtifactMinFormatVersion": "ARTIFACT_MIN_FORMAT_VERSION",
    "kManifest": "MANIFEST", "kManifestDigest": "MANIFEST_DIGEST", "kNetworkOnnx": "NETWORK_ONNX",
    "kNetworkFp16Onnx": "NETWORK_FP16_ONNX", "kNetworkOpenCVOnnx": "NETWORK_OPENCV_ONNX",
    "kNetworkPlan": "NETWORK_PLAN", "kGraphInput": "GRAPH_INPUT", "kDescriptorOutputs": "DESCRIPTOR_OUTPUTS",
    "kForegroundOutput": "FOREGROUND_OUTPUT", "kFeaturesOutput": "FEATURES_OUTPUT", "kBanks": "BANKS", "kTrainHists": "TRAIN_HISTS",
    "kBankForeground": "BANK_FOREGROUND", "kCenters": "CENTERS", "kMemories": "MEMORIES",
    "kLocationOffset": "LOCATION_OFFSET", "kPixelScoreMax": "PIXEL_SCORE_MAX",
    "kThresholdBoundSlack": "THRESHOLD_BOUND_SLACK",
}
# Python constants built from the others (no C++ twin needed), and the suffix of array_file
DERIVED = {"GRAPH_OUTPUTS", "ARRAYS", "BANK_DTYPES", "REQUIRED_FILES"}


def header_constants() -> dict:
    """name -> value of every ``constexpr`` in contract.h (strings, string arrays as tuples, ints, doubles)."""
    text = re.sub(r"//[^\n]*", "", HEADER.read_text())
    found = {}
    for name, value in re.findall(r"constexpr const char\* (\w+) = (\"[^\"]*\");", text):
        found[name] = ast.literal_eval(value)
    for name, values in re.findall(r"constexpr const char\* (\w+)\[\] = \{([^}]*)\};", text):
        found[name] = tuple(ast.literal_eval(v.strip()) for v in values.split(","))
    for name, value in re.findall(r"constexpr int (\w+) = (\d+);", text):
        found[name] = int(value)
    for name, value in re.findall(r"constexpr double (\w+) = ([0-9.eE+-]+);", text):
        found[name] = float(value)
    return found


def python_constants() -> dict:
    return {k: v for k, v in vars(contract).items() if k.isupper() and not k.startswith("_")}


def test_header_and_module_define_the_same_names():
    cpp, py = header_constants(), python_constants()
    assert set(cpp) == set(PAIRS) | {"kNpySuffix"}, "a constant of contract.h is missing from PAIRS (or gone)"
    assert set(py) == set(PAIRS.values()) | DERIVED, "a constant of contract.py is missing from PAIRS (or gone)"
    for cpp_name, py_name in PAIRS.items():
        assert cpp[cpp_name] == py[py_name], f"{cpp_name} = {cpp[cpp_name]!r} but {py_name} = {py[py_name]!r}"
    assert contract.array_file(contract.CENTERS) == contract.CENTERS + cpp["kNpySuffix"]


def test_derived_names():
    assert contract.GRAPH_OUTPUTS == (*contract.DESCRIPTOR_OUTPUTS, contract.FOREGROUND_OUTPUT, contract.FEATURES_OUTPUT)
    assert contract.ARTIFACT_MIN_FORMAT_VERSION <= contract.ARTIFACT_FORMAT_VERSION
    assert len(set(contract.ARRAYS)) == len(contract.ARRAYS) == 8


def test_cpp_manifest_struct_holds_the_runtime_settings():
    """The C++ Manifest struct has one member per RuntimeSettings field, named as the manifest key."""
    body = re.search(r"struct Manifest \{(.*?)\n\};", MANIFEST_HEADER.read_text(), re.S).group(1)
    lines = [re.sub(r"//.*", "", line).strip() for line in body.splitlines()]
    members = {re.match(r"[\w:<>, ]+?\s(\w+)\s*(=[^;]*|\{[^;]*\})?;$", line).group(1)
               for line in lines if line.endswith(";")}
    fields = {f.name for f in dataclasses.fields(contract.RuntimeSettings)}
    assert members - {"folder", "files"} == fields


def test_runtime_settings_from_manifest():
    manifest = {"image_size": 320, "strides": [8, 16], "top_k": 10, "windows": [79, 39], "kept_blocks": 20, "grid": 5,
                "blur_sigma": 4, "top_t": 512, "use_foreground": True, "threshold": 12.5}
    settings = contract.RuntimeSettings.from_manifest(manifest)
    assert settings.windows == (79, 39) and settings.blur_sigma == 4.0 and settings.pixel_normal == (0.0, 1.0)
    assert set(contract.RuntimeSettings.required_keys()) == set(manifest)
    assert contract.RuntimeSettings.from_manifest(settings.to_manifest()) == settings  # the exporter writes to_manifest()
    with pytest.raises(KeyError, match="threshold"):
        contract.RuntimeSettings.from_manifest({k: v for k, v in manifest.items() if k != "threshold"})


def test_network_output_follows_the_contract():
    from cpr_engine.exporter.network import NetworkOutput

    assert NetworkOutput._fields == contract.GRAPH_OUTPUTS


@pytest.mark.needs_native
def test_exported_artifact_follows_the_contract(tiny_detector, tmp_path):
    onnx = pytest.importorskip("onnx")
    from cpr_engine.exporter import export_artifact
    from cpr_engine.runtime.artifact import read_manifest

    folder = Path(export_artifact(tiny_detector, tmp_path / "artifact", trt="no")["artifact"])
    manifest = read_manifest(folder)
    assert set(manifest["files"]) == {contract.NETWORK_ONNX, contract.NETWORK_OPENCV_ONNX,
                                      *map(contract.array_file, contract.ARRAYS)}
    assert all(key in manifest for key in contract.RuntimeSettings.required_keys())
    for graph in (contract.NETWORK_ONNX, contract.NETWORK_OPENCV_ONNX):  # one output set for every graph
        model = onnx.load(str(folder / graph))
        assert [i.name for i in model.graph.input] == [contract.GRAPH_INPUT]
        assert tuple(o.name for o in model.graph.output) == contract.GRAPH_OUTPUTS
