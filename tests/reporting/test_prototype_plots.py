"""One prototype set's figure: circle (d=2), sphere (d=3), else a cosine histogram, each a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from protobench.reporting.prototype_plots import plot_prototypes


@pytest.mark.parametrize(("K", "d"), [(7, 2), (12, 3), (20, 16)])
def test_each_dimension_writes_a_png(tmp_path, K, d):
    P = np.random.default_rng(0).standard_normal((K, d))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    png = tmp_path / f"plot{d}.png"
    plot_prototypes(P, png, f"K={K} d={d}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unwritable_path_raises_oserror(tmp_path):
    P = np.array([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(OSError):
        plot_prototypes(P, tmp_path / "missing" / "p.png", "t")
