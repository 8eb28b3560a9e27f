"""``hpn``: the cross-polytope when K = 2d, regular polygons, the Platonic solids in 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protobench import prototypes
from tests.prototypes.helpers import generate_cpu


@pytest.mark.parametrize(("K", "d"), [(6, 3), (10, 5)])
def test_cross_polytope_when_k_is_2d(K, d):
    m = prototypes.metrics(generate_cpu("hpn", K, d))
    assert m.max_cosine <= 1e-3
    assert m.min_angle_deg == pytest.approx(90.0, abs=0.1)


def test_regular_polygon_in_2d():
    P = generate_cpu("hpn", 7, 2)
    assert prototypes.metrics(P).min_angle_deg == pytest.approx(360 / 7, abs=0.5)
    angles = np.sort(np.degrees(np.arctan2(P[:, 1].numpy(), P[:, 0].numpy())))
    gaps = np.diff(np.append(angles, angles[0] + 360))
    assert np.allclose(gaps, 360 / 7, atol=0.5)


@pytest.mark.parametrize(
    ("K", "angle"), [(4, math.degrees(math.acos(-1 / 3))), (6, 90.0), (12, math.degrees(math.atan(2)))]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_platonic_solids_in_3d(K, angle, seed):
    m = prototypes.metrics(generate_cpu("hpn", K, 3, seed))
    assert m.min_angle_deg == pytest.approx(angle, abs=0.5)
    assert m.mean_nn_angle_deg == pytest.approx(angle, abs=0.5)
