"""``uniform`` (DL2PA): the simplex when K <= d + 1, regular polygons, the cross-polytope, t matters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protobench import prototypes
from protobench.prototypes.uniform import uniform_energy
from tests.prototypes.helpers import generate_cpu


@pytest.mark.parametrize(("K", "d"), [(10, 9), (5, 16), (3, 2)])
def test_simplex_when_k_at_most_d_plus_1(K, d):
    P = generate_cpu("uniform", K, d)
    cos = P.double() @ P.double().T
    off = cos[~torch.eye(K, dtype=torch.bool)]
    # Every pair, not only the max: the regular simplex is equiangular.
    assert off.max().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert off.min().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert prototypes.metrics(P).simplex_gap < 1e-4


def test_regular_polygon_in_2d():
    P = generate_cpu("uniform", 7, 2)
    m = prototypes.metrics(P)
    assert m.min_angle_deg == pytest.approx(360 / 7, abs=0.5)
    # Regular: every gap between consecutive points is 360/7, not only the smallest.
    angles = np.sort(np.degrees(np.arctan2(P[:, 1].numpy(), P[:, 0].numpy())))
    gaps = np.diff(np.append(angles, angles[0] + 360))
    assert np.allclose(gaps, 360 / 7, atol=0.5)


def test_cross_polytope_and_t_parameter():
    m = prototypes.metrics(generate_cpu("uniform", 8, 4))
    assert m.max_cosine <= 1e-3
    # t changes the optimum when K > 2d (softer/harder potential), and the cache key.
    a, b = generate_cpu("uniform", 30, 3, t=2.0), generate_cpu("uniform", 30, 3, t=10.0)
    assert not torch.allclose(a, b, atol=1e-3)


def test_gradient_matches_autograd():
    K, t = 7, 2.0
    X = torch.nn.functional.normalize(torch.randn(K, 4, dtype=torch.float64), dim=1).requires_grad_()
    (K * uniform_energy(X @ X.T, t)).backward()
    eye = torch.eye(K, dtype=torch.bool)
    logits = (-t * (2 - 2 * (X @ X.T))).masked_fill(eye, -math.inf)
    W = torch.softmax(logits.flatten(), 0).view(K, K)
    assert torch.allclose(X.grad, 4 * t * K * (W @ X).detach(), atol=1e-12)
