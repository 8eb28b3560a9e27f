"""Prototype metrics on a hand-checkable set (the square), from numpy and torch alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protobench import prototypes
from protobench.core.errors import UserError


def test_metrics_values():
    square = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    m = prototypes.metrics(square)
    assert m.max_cosine == pytest.approx(0.0, abs=1e-12)
    assert m.min_angle_deg == pytest.approx(90.0)
    assert m.mean_nn_angle_deg == pytest.approx(90.0)
    assert m.max_abs_cosine == pytest.approx(1.0)
    assert m.simplex_bound == pytest.approx(-1 / 3)
    assert m.simplex_gap == pytest.approx(1 / 3)
    # log(mean over the 6 pairs of exp(-2 ||p_i - p_j||^2)): 4 pairs at distance^2 2, 2 at 4.
    assert m.uniformity_energy == pytest.approx(math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6))
    assert set(m.as_dict()) == {
        "max_cosine", "min_angle_deg", "mean_nn_angle_deg", "uniformity_energy",
        "max_abs_cosine", "simplex_bound", "simplex_gap",
    }  # fmt: skip
    # A torch tensor gives the same numbers.
    assert prototypes.metrics(torch.tensor(square, dtype=torch.float32)).max_cosine == pytest.approx(0, abs=1e-7)


def test_metrics_need_two_rows():
    with pytest.raises(UserError, match="K >= 2"):
        prototypes.metrics(np.ones((1, 3)))
