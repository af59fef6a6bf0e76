import numpy as np
import pytest

from cpr_engine.overlay import heatmap_overlay


def test_overlay_colours_follow_normal_level():
    image = np.zeros((4, 3, 3), np.uint8)
    amap = np.array([[1.0, 3.0, 9.0]] * 4, np.float32)  # median 1 -> blue, max 3 -> green, far above -> red
    out = heatmap_overlay(image, amap, (1.0, 3.0), alpha=1.0)
    assert out.shape == (4, 3, 3) and out.dtype == np.uint8
    r, g, b = out[0].T
    assert b[0] > max(r[0], g[0])          # typical good surface is blue
    assert g[1] > max(r[1], b[1])          # the largest good pixel is mid-scale green
    assert r[2] > max(g[2], b[2])          # far above: red


def test_overlay_shape_mismatch():
    with pytest.raises(ValueError, match=r"map \(2, 2\) does not match image \(4, 3\)"):
        heatmap_overlay(np.zeros((4, 3, 3), np.uint8), np.zeros((2, 2), np.float32), (0.0, 1.0))
