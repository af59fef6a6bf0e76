"""GraphPipeline (cpr_engine.graph_pipeline): on-device resize == OpenCV, pipeline == Detector.score_batch, bad input.

Tolerances:
* resize matrices vs ``cv2.resize`` on float32 images: 1e-5 of the value range (summation order);
* on uint8 images: the area filter (input larger than the model size, the usual case) is exact, so
  the CPU pipeline equals ``Detector.score_batch`` to float rounding (1e-6); OpenCV's bilinear filter
  (input smaller than the model size) uses 11-bit fixed-point weights, so there the network input may
  differ by one grey level (1/255): that case checks the bound, and that the rest of the pipeline
  equals the model on the pipeline's own input;
* CUDA (skipped without a GPU): graph replay == eager on the same GPU to 1e-6; float32 graph vs the
  CPU detector 1e-3 relative (cuDNN vs oneDNN rounding); float16 graph vs float32 graph 5e-2 relative
  on scores and 5e-2 of the largest map value on maps.
"""
import cv2
import numpy as np
import pytest
import torch

from cpr_engine import ops
from cpr_engine.graph_pipeline import GraphPipeline
from cpr_engine.inputs import Prediction
from cpr_engine.graph_pipeline.resize import image_matrices, map_matrices, resize, round_to_uint8
from cpr_engine.preprocess import resize_image, resize_map, to_model_input

pytestmark = pytest.mark.needs_native

needs_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and ops.cuda_available()),
                                reason="needs a CUDA GPU and cpr_engine._C built with CUDA")

# (H, W) of the inputs with the model size 64: same size, area 1.5x, area 2x (OpenCV's ties-up path),
# area non-square; bilinear: smaller than the model, non-square
AREA_SIZES = [(64, 64), (96, 96), (128, 128), (100, 70)]
LINEAR_SIZES = [(50, 70), (40, 40)]


@pytest.fixture(scope="module")
def photos(demo_root):
    """Four 96 x 96 demo photos (good and defective)."""
    from pathlib import Path

    from cpr_engine.data import read_image

    return [read_image(p) for p in sorted(Path(demo_root, "coffee", "test").glob("*/*.png"))[:4]]


def batch_of(photos, size):
    """The photos resized with OpenCV to (H, W) = size, as a (B, H, W, 3) uint8 batch."""
    return np.stack([cv2.resize(p, size[::-1], interpolation=cv2.INTER_AREA) for p in photos])


def _resize_np(image, rows, cols):
    return resize(torch.from_numpy(image), torch.from_numpy(rows), torch.from_numpy(cols.T.copy())).numpy()


@pytest.mark.parametrize("hw", AREA_SIZES + LINEAR_SIZES + [(320, 288)])
def test_image_matrices_equal_opencv_on_float_images(hw):
    h, w = hw
    image = np.random.default_rng(h * w).random((h, w), dtype=np.float32) * 255
    rows, cols, _ = image_matrices(h, w, 64)
    interp = cv2.INTER_AREA if 64 < min(h, w) else cv2.INTER_LINEAR
    np.testing.assert_allclose(_resize_np(image, rows, cols), cv2.resize(image, (64, 64), interpolation=interp),
                               rtol=0, atol=255e-5)


@pytest.mark.parametrize("hw", AREA_SIZES + LINEAR_SIZES)
def test_map_matrices_equal_resize_map(hw):
    amap = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    rows, cols = map_matrices(64, *hw)
    np.testing.assert_allclose(_resize_np(amap, rows, cols), resize_map(amap, hw), rtol=0, atol=1e-5)


@pytest.mark.parametrize("hw", AREA_SIZES + LINEAR_SIZES)
def test_uint8_resize_matches_opencv(hw):
    image = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    rows, cols, ties_up = image_matrices(*hw, 64)
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    got = round_to_uint8(resize(x, torch.from_numpy(rows), torch.from_numpy(cols.T.copy())), ties_up)
    want = torch.from_numpy(resize_image(image, 64)).permute(2, 0, 1).float()
    if hw in AREA_SIZES:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:  # OpenCV's fixed-point bilinear weights
        assert (got - want).abs().max() <= 1


@pytest.mark.parametrize("which", ["tiny_detector", "object_detector", "score_only_detector"])
@pytest.mark.parametrize("map_size", ["model", "input"])
@pytest.mark.parametrize("hw", AREA_SIZES)
def test_cpu_pipeline_equals_score_batch(which, map_size, hw, photos, request):
    det = request.getfixturevalue(which)
    batch = batch_of(photos, hw)
    pipe = GraphPipeline(det, len(batch), hw, map_size=map_size)
    assert (pipe.fp16, pipe.graph) == (False, False)
    scores, maps = pipe.run(batch)
    want_scores, want_maps = det.score_batch(list(batch))
    if map_size == "input":
        want_maps = np.stack([resize_map(m, hw) for m in want_maps])
    assert scores.dtype == maps.dtype == np.float32 and maps.shape == want_maps.shape
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    np.testing.assert_allclose(maps, want_maps, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("hw", LINEAR_SIZES)
def test_cpu_pipeline_on_smaller_images(hw, object_detector, photos):
    batch = batch_of(photos, hw)
    pipe = GraphPipeline(object_detector, len(batch), hw)
    x = pipe.preprocess(torch.from_numpy(batch))
    assert (x - torch.from_numpy(to_model_input(list(batch), 64))).abs().max() <= 1 / 255 + 1e-7
    scores, maps = pipe.run(batch)
    with torch.no_grad():
        want = object_detector.model(x)
    np.testing.assert_allclose(scores, want.pred_score.numpy(), rtol=1e-6)
    np.testing.assert_allclose(maps, want.anomaly_map.numpy(), rtol=1e-6, atol=1e-6)


def test_entry_points_agree(tiny_detector, photos):
    batch = batch_of(photos, (96, 96))
    pipe = GraphPipeline(tiny_detector, 4, (96, 96))
    want_scores, want_maps = (a.copy() for a in pipe.run(batch))
    other_scores, _ = pipe.run(batch[::-1].copy())
    assert not np.array_equal(other_scores, want_scores)
    pipe.host_input[:] = batch  # zero-copy entry: the caller fills the host buffer
    scores, maps = pipe.run()
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(maps, want_maps)
    dev_scores, dev_maps = pipe.run_device(torch.from_numpy(batch))
    np.testing.assert_array_equal(dev_scores.numpy(), want_scores)
    np.testing.assert_array_equal(dev_maps.numpy(), want_maps)


@pytest.mark.parametrize("map_size", ["model", "input"])
def test_predict_gives_the_predictions_of_detector_predict(tiny_detector, photos, map_size):
    batch = batch_of(photos, (96, 96))
    got = GraphPipeline(tiny_detector, 4, (96, 96), map_size=map_size).predict(batch)
    want = tiny_detector.predict(list(batch))
    assert len(got) == len(want) and all(isinstance(p, Prediction) for p in got)
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, rel=1e-5) and g.is_anomalous == w.is_anomalous
        assert g.anomaly_map.shape == (96, 96)
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, rtol=1e-4, atol=1e-4 * float(w.anomaly_map.max()))


@pytest.mark.parametrize("bad,error,match", [
    (np.zeros((3, 96, 96, 3), np.uint8), ValueError, "got batch size 3"),
    (np.zeros((4, 64, 96, 3), np.uint8), ValueError, r"got image size \(64, 96\)"),
    (np.zeros((4, 96, 96, 3), np.float32), ValueError, "got dtype float32"),
    (np.zeros((4, 96, 96, 4), np.uint8), ValueError, "3 channels"),
    (np.zeros((96, 96, 3), np.uint8), ValueError, "4 dimensions"),
    ([np.zeros((96, 96, 3), np.uint8)] * 4, TypeError, "numpy.ndarray"),
])
def test_bad_input_raises(bad, error, match, tiny_detector):
    pipe = GraphPipeline(tiny_detector, 4, (96, 96))
    with pytest.raises(error, match=match):
        pipe.run(bad)
    if isinstance(bad, np.ndarray):
        with pytest.raises(error, match=match):
            pipe.run_device(torch.from_numpy(bad))


def test_bad_construction_raises(tiny_detector):
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphPipeline(tiny_detector, 1, (64, 64), fp16=True)
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphPipeline(tiny_detector, 1, (64, 64), graph=True)
    with pytest.raises(ValueError, match="map_size"):
        GraphPipeline(tiny_detector, 1, (64, 64), map_size="full")
    with pytest.raises(ValueError, match="batch_size"):
        GraphPipeline(tiny_detector, 0, (64, 64))


# ---- CUDA (skipped here; benchmarks/gpu_check.py runs them on a GPU) --------------------------------

@pytest.fixture(scope="module")
def cuda_detector(object_detector, tmp_path_factory):
    from cpr_engine import Detector

    return Detector.load(object_detector.save(tmp_path_factory.mktemp("gpu") / "model.pt"), device="cuda")


@needs_cuda
@pytest.mark.parametrize("which", ["object_detector", "score_only_detector"])
@pytest.mark.parametrize("hw", [(64, 64), (96, 96)])
def test_graph_replay_equals_eager(hw, which, photos, request, tmp_path):
    from cpr_engine import Detector

    cpu_detector = request.getfixturevalue(which)
    cuda_detector = Detector.load(cpu_detector.save(tmp_path / "model.pt"), device="cuda")
    graph = GraphPipeline(cuda_detector, 4, hw, fp16=False, map_size="input")
    eager = GraphPipeline(cuda_detector, 4, hw, fp16=False, graph=False, map_size="input")
    assert graph.graph and not eager.graph
    for batch in (batch_of(photos[::-1], hw), batch_of(photos, hw)):  # each replay reads the new input
        got_scores, got_maps = (a.copy() for a in graph.run(batch))
        want_scores, want_maps = eager.run(batch)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
        np.testing.assert_allclose(got_maps, want_maps, rtol=1e-6, atol=1e-6)
    cpu_scores, cpu_maps = GraphPipeline(cpu_detector, 4, hw, map_size="input").run(batch)
    np.testing.assert_allclose(got_scores, cpu_scores, rtol=1e-3)
    np.testing.assert_allclose(got_maps, cpu_maps, rtol=1e-3, atol=1e-3 * np.abs(cpu_maps).max())
    dev_scores, dev_maps = graph.run_device(torch.from_numpy(batch).cuda())
    torch.cuda.synchronize()
    np.testing.assert_array_equal(dev_scores.cpu().numpy(), got_scores)


@needs_cuda
def test_graph_fp16_close_to_fp32(cuda_detector, photos):
    batch = batch_of(photos, (96, 96))
    half = GraphPipeline(cuda_detector, 4, (96, 96))
    assert half.fp16 and half.graph
    scores, maps = (a.copy() for a in half.run(batch))
    want_scores, want_maps = GraphPipeline(cuda_detector, 4, (96, 96), fp16=False).run(batch)
    np.testing.assert_allclose(scores, want_scores, rtol=5e-2)
    assert np.abs(maps - want_maps).max() <= 5e-2 * np.abs(want_maps).max()


@needs_cuda
def test_capture_rejects_a_host_sync(cuda_detector):
    """What makes 'the graph captured' evidence of 'no host sync': the checked NN search syncs, and fails
    under capture (last in the file: a failed capture is best kept from other tests)."""
    model = cuda_detector.model
    descs = [torch.zeros(1, b.shape[1], b.shape[2], b.shape[3], device="cuda") for b in model.banks]
    index = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    windows = list(cuda_detector.config.windows)
    ops.nn_search(descs, model.banks, index, windows, check_index=True)  # fine outside capture
    torch.cuda.synchronize()
    with pytest.raises(RuntimeError):
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            ops.nn_search(descs, model.banks, index, windows, check_index=True)
