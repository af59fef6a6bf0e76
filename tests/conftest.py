"""Shared fixtures: a tiny real-photo data set and a tiny trained detector (built once per session)."""
import numpy as np
import pytest
import torch

from cpr_engine.data import build_demo

# memory_fractions: 8 training images give memories of 1 (fine) and 3 (coarse) maps, so every tail and
# runtime is tested with a different memory size per scale
TINY = dict(variant="faster", image_size=64, steps=4, batch_size=4, top_k=3, n_points=32,
            kmeans_samples=2000, kmeans_n_init=2, memory_fractions=(0.1, 0.3))


@pytest.fixture(autouse=True)
def _restore_rng():
    """Tests may seed torch / NumPy; restore the global state afterwards."""
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    yield
    torch.random.set_rng_state(torch_state)
    np.random.set_state(np_state)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small demo data set (grass texture, coffee object) in MVTec AD layout."""
    root = tmp_path_factory.mktemp("demo")
    return build_demo(root, seed=3, categories=("grass", "coffee"), n_train=8, n_test_good=3, n_test_defect=4,
                      size=96)


@pytest.fixture(scope="session")
def tiny_detector(demo_root):
    """A Detector trained for a few steps on the tiny grass category (CPU, seconds)."""
    from cpr_engine import Detector

    options = dict(TINY)
    variant = options.pop("variant")
    return Detector(variant, device="cpu", **options).fit(f"{demo_root}/grass", texture=True, category="grass")


@pytest.fixture(scope="session")
def object_detector(demo_root):
    """A Detector trained for a few steps on the tiny coffee object category (foreground branch on)."""
    from cpr_engine import Detector

    options = dict(TINY)
    variant = options.pop("variant")
    det = Detector(variant, device="cpu", **options).fit(f"{demo_root}/coffee", category="coffee")
    assert bool(det.model.use_foreground)
    return det


@pytest.fixture(scope="session")
def score_only_detector(object_detector, tmp_path_factory):
    """``object_detector`` with its foreground on the image score only (the maps unweighted)."""
    from cpr_engine import Detector

    det = Detector.load(object_detector.save(tmp_path_factory.mktemp("score_only") / "model.pt"), device="cpu")
    det.model.set_foreground_mode("score")
    assert det.model.foreground_mode == "score" and not det.config.foreground_on_map
    return det
