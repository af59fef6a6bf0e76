"""The memory (a coreset of every training patch) and the location offset: cpr_engine/training/memory.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cpr_engine import tail
from cpr_engine.config import CPRConfig
from cpr_engine.errors import InputError
from cpr_engine.preprocess import to_model_input
from cpr_engine.training.memory import greedy_coreset, location_offset


def _unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_greedy_coreset_adds_the_farthest_row_each_time():
    vectors = _unit_rows(57, 5, 0)
    chosen = greedy_coreset(vectors, 9, seed=1)
    assert len(set(chosen.tolist())) == 9
    for i in range(1, 9):
        distance = (1 - vectors @ vectors[chosen[:i]].T).min(1).values
        assert float(distance[chosen[i]]) >= float(distance.max()) - 1e-6
    assert sorted(greedy_coreset(vectors, 57).tolist()) == list(range(57))
    for bad in (0, 58):
        with pytest.raises(ValueError, match="count must be in"):
            greedy_coreset(vectors, bad)


def test_greedy_coreset_visits_every_cluster_first():
    """Three tight clusters of unequal size: three picks take one row of each."""
    centers = torch.eye(3, 4)
    sizes = (40, 5, 2)
    noise = _unit_rows(sum(sizes), 4, 2) * 0.01
    vectors = F.normalize(torch.cat([c.expand(n, 4) for c, n in zip(centers, sizes)]) + noise, dim=1)
    cluster = np.repeat(np.arange(3), sizes)
    assert sorted(cluster[greedy_coreset(vectors, 3, seed=5).numpy()].tolist()) == [0, 1, 2]


def test_memory_sizes_per_scale():
    config = CPRConfig(memory_fractions=(0.01, 0.05))
    assert config.memory_images(30) == (1, 2) and config.memory_images(231) == (3, 12)
    for bad in ((0.01,), (0.0, 0.05), (0.01, 1.5)):
        with pytest.raises(InputError, match="memory_fractions"):
            CPRConfig(memory_fractions=bad)


def test_memory_holds_bank_patches_of_their_source_images(tiny_detector):
    model = tiny_detector.model
    n = model.bank_4.shape[0]
    assert tuple(m.shape[0] for m in model.memories) == model.config.memory_images(n)
    assert min(model.config.memory_images(n)) >= 1
    # conftest's TINY sizes the scales differently, so every parity test covers per-scale memory sizes
    assert model.memory_4.shape[0] != model.memory_8.shape[0]
    for bank, memory, sources in zip(model.banks, model.memories, model.memory_sources):
        assert memory.shape[1:] == bank.shape[1:] and sources.shape == (memory.shape[0], *memory.shape[2:])
        patches = memory.permute(0, 2, 3, 1).reshape(-1, memory.shape[1])
        for patch, source in zip(patches, sources.reshape(-1)):
            own = bank[int(source)].reshape(bank.shape[1], -1).T  # (h * w, D) patches of the source image
            assert float((own - patch).abs().max(1).values.min()) < 1e-6
        assert len(torch.unique(patches, dim=0)) == len(patches), "a patch was picked twice"


def _training_taps(detector, demo_root):
    from cpr_engine.data import load_split
    from cpr_engine.evaluate import read_sample

    images = [read_sample(s, detector.config.image_size)[0] for s in load_split(demo_root, "folder", "grass", "train")]
    with torch.no_grad():
        return detector.model.features(torch.from_numpy(to_model_input(images, detector.config.image_size)))


def test_leave_one_out_removes_the_image_from_the_memory(tiny_detector, demo_root):
    """Scored with itself excluded, a training image no longer finds its own memory patches (distance 0
    without the exclusion); no patch gets closer."""
    model = tiny_detector.model
    feats = _training_taps(tiny_detector, demo_root)
    image = int(model.memory_source_4.reshape(-1)[0])  # an image with patches in the memory
    taps = [f[image:image + 1] for f in feats]
    descriptors = model.descriptors(taps)
    with torch.no_grad():
        index = model.retrieve(taps[0], exclude=torch.tensor([image]))
        seen = tail.local_search(descriptors, index, model.tail_state, model.config)
        left_out = tail.local_search(descriptors, index, model.tail_state, model.config, exclude=torch.tensor([image]))
    assert float(seen[0].min()) < 1e-5
    for a, b in zip(seen, left_out):
        assert (b >= a - 1e-6).all()
    assert float(left_out[0].min()) > 1e-4


def test_location_offset_is_the_centred_mean_map(tiny_detector, demo_root):
    model = tiny_detector.model
    feats = _training_taps(tiny_detector, demo_root)
    ids = torch.arange(feats[0].shape[0])
    saved = model.location_offset.clone()
    offset = location_offset(model, feats, ids)
    assert offset.shape == model.location_offset.shape
    assert abs(float(offset.mean())) < 1e-6 and float(offset.min()) < 0 < float(offset.max())  # m - mean(m)
    # m - mean(m) for m the mean leave-one-out fused map, computed image by image here
    from cpr_engine.reference.scoring import fuse_scales

    maps = []
    with torch.no_grad():
        for i in ids.tolist():
            taps, exclude = [f[i:i + 1] for f in feats], torch.tensor([i])
            index = model.retrieve(taps[0], exclude=exclude)
            maps.append(fuse_scales(tail.local_search(model.descriptors(taps), index, model.tail_state, model.config,
                                                      exclude=exclude))[0])
    mean_map = torch.stack(maps).mean(0)
    torch.testing.assert_close(offset, mean_map - mean_map.mean(), rtol=1e-4, atol=1e-5)
    assert torch.equal(model.location_offset, saved), "computing an offset must not change the model's"
