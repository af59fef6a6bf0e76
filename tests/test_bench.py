"""cpr-bench: the staged pipeline it times is the real one; the CLI prints the table and writes the JSON."""
import json
from pathlib import Path

import numpy as np
import pytest

from cpr_engine.timing.run import bench, demo_model, percentile
from cpr_engine.timing.stages import GRAPH_STAGES, STAGES, artifact_stages, graph_stages, run_stages, torch_stages
from cpr_engine.cli import bench as bench_cli
from cpr_engine.data import read_image
from cpr_engine.data.imageio import write_image
from tests.helpers.cli import cli_error

pytestmark = pytest.mark.needs_native


@pytest.fixture(scope="module")
def images(demo_root):
    paths = sorted(Path(demo_root).glob("grass/test/*/*.png"))[:4]
    return [read_image(p) for p in paths] + [read_image(paths[0])[:60, :]]  # and a non-square crop


@pytest.fixture(scope="module")
def model_pt(tiny_detector, tmp_path_factory):
    return tiny_detector.save(tmp_path_factory.mktemp("bench") / "model.pt")


@pytest.fixture(scope="module")
def artifact(tiny_detector, tmp_path_factory):
    from cpr_engine.exporter import export_artifact
    return Path(export_artifact(tiny_detector, tmp_path_factory.mktemp("bench_art") / "a", trt="no")["artifact"])


def assert_same(state, want, map_atol):
    """The stages' final state equals a list of Predictions (scores rtol 1e-6, maps rtol 1e-6 + map_atol)."""
    np.testing.assert_allclose(state["scores"], [p.score for p in want], rtol=1e-6)
    for got, pred in zip(state["maps"], want):
        np.testing.assert_allclose(got, pred.anomaly_map, rtol=1e-6, atol=map_atol)


def test_torch_stages_equal_predict(tiny_detector, images):
    state, times = run_stages(torch_stages(tiny_detector), images, clock=lambda: 0.0)
    want = tiny_detector.predict(images)
    assert_same(state, want, map_atol=1e-7)
    assert list(times) == list(STAGES)


def test_artifact_stages_equal_predict(artifact, images):
    from cpr_engine.runtime.detector import ArtifactDetector
    det = ArtifactDetector.load(artifact)
    state, times = run_stages(artifact_stages(det), images, clock=lambda: 0.0)
    assert list(times) == list(STAGES)
    want = det.predict(images)
    np.testing.assert_array_equal(state["scores"], [p.score for p in want])
    for got, pred in zip(state["maps"], want):
        np.testing.assert_array_equal(got, pred.anomaly_map)


def test_graph_stages_equal_predict(tiny_detector, images):
    from cpr_engine.graph_pipeline import GraphPipeline

    same_size = images[:4]
    pipe = GraphPipeline(tiny_detector, 4, same_size[0].shape[:2], map_size="input")
    state, times = run_stages(graph_stages(pipe), same_size, clock=lambda: 0.0)
    want = tiny_detector.predict(same_size)
    assert_same(state, want, map_atol=1e-6)
    assert list(times) == list(GRAPH_STAGES)
    result = bench(pipe, "graph", same_size, batch=4, warmup=1, runs=2)
    assert set(result["stages_ms"]) == set(GRAPH_STAGES) and result["latency_ms"]["p50"] > 0


def test_bench_report(tiny_detector, images):
    result = bench(tiny_detector, "torch", images, batch=2, warmup=1, runs=3)
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] and lat["mean"] > 0
    assert result["batch_latency_ms"]["p50"] == pytest.approx(2 * lat["p50"])
    assert result["throughput_images_per_s"] == pytest.approx(1000 / lat["mean"], rel=1e-6)
    assert set(result["stages_ms"]) == set(STAGES) and all(v >= 0 for v in result["stages_ms"].values())
    assert result["peak_memory_mib"] > 10
    with pytest.raises(ValueError, match="batch >= 1"):
        bench(tiny_detector, "torch", images, batch=0, warmup=0, runs=1)


def test_percentile_matches_hand_computed():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cli_prints_table_and_writes_json(backend, model_pt, demo_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_cli.main(["--model", str(model_pt), "--backend", backend, "--runs", "2", "--warmup", "1",
                           "--batch", "2", "--images", f"{demo_root}/grass/test/good", "--json", str(out),
                           "--fp16", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"backend {backend}" in printed and "latency per image" in printed and "scoring tail" in printed
    report = json.loads(out.read_text())
    assert report["config"]["backend"] == backend and report["config"]["batch"] == 2
    assert report["config"]["variant"] == "faster" and report["machine"]["cpu_count"] >= 1
    assert list(report["stages_ms"]) == list(STAGES)


def test_cli_refuses_an_artifact_for_the_torch_backend(artifact, tmp_path, capsys):
    assert "needs a model.pt" in cli_error(
        bench_cli.main, ["--model", str(artifact), "--backend", "torch", "--json", str(tmp_path / "b.json")], capsys)


def test_demo_model_is_trained_once_and_cached(tmp_path):
    tiny = dict(image_size=64, steps=1, batch_size=2, top_k=3, n_points=16, kmeans_samples=1000, kmeans_n_init=1)
    first = demo_model("faster", root=tmp_path, **tiny)
    stamp = first.stat().st_mtime_ns
    assert demo_model("faster", root=tmp_path, **tiny) == first and first.stat().st_mtime_ns == stamp
    assert (tmp_path / "data" / "coffee" / "test" / "good").is_dir()


def test_cli_graph_backend(model_pt, demo_root, tmp_path, capsys):
    """On CPU the graph backend times the eager float32 pipeline and says so; one image size only."""
    out = tmp_path / "bench.json"
    assert bench_cli.main(["--model", str(model_pt), "--backend", "graph", "--runs", "2", "--warmup", "1",
                           "--batch", "2", "--images", f"{demo_root}/grass/test/good", "--json", str(out),
                           "--fp16", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "backend graph" in printed and "whole pipeline" in printed and "one CUDA graph, eagerly on CPU" in printed
    report = json.loads(out.read_text())
    assert report["config"]["cuda_graph"] is False and report["config"]["fp16_network"] is False
    assert report["config"]["fp16_bank"] is False  # --fp16 is for exported banks; graph exports nothing
    assert set(report["stages_ms"]) == set(GRAPH_STAGES)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    photo = read_image(sorted(Path(demo_root, "grass", "test", "good").glob("*.png"))[0])
    write_image(mixed / "a.png", photo)
    write_image(mixed / "b.png", photo[:60])
    assert "needs images of one size" in cli_error(
        bench_cli.main, ["--model", str(model_pt), "--backend", "graph", "--images", str(mixed), "--json", str(out),
                         "--quiet"], capsys)


def test_stages_refuse_what_predict_refuses(tiny_detector, artifact):
    """The timed stages check images as predict does: a side below the finest patch grid is refused."""
    from cpr_engine.errors import InputError
    from cpr_engine.runtime.detector import ArtifactDetector

    tiny = [np.full((1, 1, 3), 128, np.uint8)]
    for stages in (torch_stages(tiny_detector), artifact_stages(ArtifactDetector.load(artifact))):
        with pytest.raises(InputError, match="image 0 is 1 x 1 pixels: a side below"):
            run_stages(stages, tiny, clock=lambda: 0.0)
