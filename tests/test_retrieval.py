import numpy as np
import pytest
import torch

from cpr_engine.reference.retrieval import KL_EPS, block_histogram, codebook_assign, hist_match, top_k
from tests.helpers.cases import HIST_CASES, random_hists


def ref_codebook_assign(f, c):
    b, ch, h, w = f.shape
    out = np.zeros((b, h, w), np.int64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = np.argmin(((c - f[i, :, y, x]) ** 2).sum(1))
    return out


def ref_block_histogram(ids, m, grid):
    b, h, w = ids.shape
    bh, bw = -(-h // grid), -(-w // grid)
    out = np.zeros((b, grid * grid, m + 1), np.float64)
    for i in range(b):
        for gy in range(grid):
            for gx in range(grid):
                for y in range(gy * bh, (gy + 1) * bh):
                    for x in range(gx * bw, (gx + 1) * bw):
                        v = ids[i, y, x] + 1 if (y < h and x < w) else 0
                        out[i, gy * grid + gx, v] += 1
    return out / (bh * bw)


def ref_hist_match(q, r, kept):
    out = np.zeros((len(q), len(r)))
    for i in range(len(q)):
        for j in range(len(r)):
            qe, re = q[i].astype(np.float64) + KL_EPS, r[j].astype(np.float64) + KL_EPS
            per_block = (qe * np.log(qe / re)).sum(-1)
            out[i, j] = np.sort(per_block)[:kept].sum()
    return out


@pytest.mark.parametrize("b,n,h,w,m,grid", HIST_CASES)
def test_codebook_and_histogram_match_loops(b, n, h, w, m, grid):
    g = torch.Generator().manual_seed(h * w + m)
    feats = torch.randn(b, 6, h, w, generator=g)
    centers = torch.randn(m, 6, generator=g)
    ids = codebook_assign(feats, centers)
    np.testing.assert_array_equal(ids.numpy(), ref_codebook_assign(feats.numpy(), centers.numpy()))
    hists = block_histogram(ids, m, grid)
    assert hists.shape == (b, grid * grid, m + 1)
    np.testing.assert_allclose(hists.numpy(), ref_block_histogram(ids.numpy(), m, grid), atol=1e-7)
    np.testing.assert_allclose(hists.sum(-1).numpy(), 1.0, atol=1e-6)


def test_histogram_padding_counts_as_bin_zero():
    ids = torch.zeros(1, 5, 5, dtype=torch.int64)  # grid 3 -> blocks of 2x2 over a 6x6 padded map
    h = block_histogram(ids, 2, 3)
    assert h[0, 0].tolist() == [0.0, 1.0, 0.0]          # top-left block: all real pixels, id 0 -> bin 1
    assert h[0, 2].tolist() == [0.5, 0.5, 0.0]          # right column: half padding
    assert h[0, 8].tolist() == [0.75, 0.25, 0.0]        # bottom-right block: one real pixel of four


@pytest.mark.parametrize("kept", [1, 20, 25])
def test_hist_match_equals_reference(kept):
    rng = np.random.default_rng(kept)
    q, r = random_hists(3, 25, 13, rng), random_hists(11, 25, 13, rng)
    got = hist_match(torch.from_numpy(q), torch.from_numpy(r), kept).numpy()
    np.testing.assert_allclose(got, ref_hist_match(q, r, kept), rtol=1e-4, atol=1e-4)


def test_hist_match_robust_to_outlier_blocks():
    rng = np.random.default_rng(0)
    base = random_hists(1, 25, 13, rng)
    defect = base.copy()
    defect[0, :5] = np.roll(defect[0, :5], 3, axis=-1)  # 5 blocks changed, as a defect would
    other = random_hists(1, 25, 13, rng)
    d = hist_match(torch.from_numpy(defect), torch.from_numpy(np.concatenate([base, other])), 20)
    assert d[0, 0] < 1e-4 < d[0, 1]  # dropping the 5 worst blocks ignores the defect entirely
    assert hist_match(torch.from_numpy(base), torch.from_numpy(base), 25)[0, 0].abs() < 1e-4


def test_top_k_references_order_ties_exclude():
    d = torch.tensor([[3.0, 1.0, 1.0, 0.5], [0.0, 2.0, 1.0, 1.0]])
    assert top_k(d, 3).tolist() == [[3, 1, 2], [0, 2, 3]]
    assert top_k(d, 10).shape == (2, 4)  # K > N clips
    ex = top_k(d, 10, exclude=torch.tensor([3, 0]))
    assert ex.tolist() == [[1, 2, 0], [2, 3, 1]]
    with pytest.raises(ValueError, match="no reference left"):
        top_k(torch.zeros(1, 1), 1, exclude=torch.tensor([0]))


def test_retrieval_errors_name_shapes():
    with pytest.raises(ValueError, match=r"centers must be \(M, 4\), got \(3, 5\)"):
        codebook_assign(torch.zeros(1, 4, 2, 2), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="differ"):
        hist_match(torch.zeros(1, 25, 13), torch.zeros(2, 25, 12), 20)
    with pytest.raises(ValueError, match="kept_blocks must be in"):
        hist_match(torch.zeros(1, 25, 13), torch.zeros(2, 25, 13), 26)
