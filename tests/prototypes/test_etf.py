"""``etf``: the regular simplex in closed form, and the d >= K-1 rule that it and the ETF method share."""

from __future__ import annotations

import pytest
import torch

from protobench import prototypes
from protobench.core.errors import UserError
from protobench.heads import create_method
from protobench.methods import NotApplicable
from protobench.prototypes import etf_dimension_problem
from tests.prototypes.helpers import generate_cpu


@pytest.mark.parametrize(("K", "d"), [(10, 9), (5, 16), (3, 2)])
def test_simplex_when_k_at_most_d_plus_1(K, d):
    P = generate_cpu("etf", K, d)
    cos = P.double() @ P.double().T
    off = cos[~torch.eye(K, dtype=torch.bool)]
    assert off.max().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert off.min().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert prototypes.metrics(P).simplex_gap < 1e-4


def test_dimension_rule():
    assert etf_dimension_problem(10, 8) == "ETF needs d >= K-1 (K=10, d=8)"
    assert etf_dimension_problem(10, 9) is None
    assert etf_dimension_problem(10, 64) is None


def test_generator_and_method_both_apply_the_rule():
    from protobench.methods import METHODS

    assert prototypes.get_generator("etf").dimension_problem is etf_dimension_problem
    assert METHODS.get("etf").dimension_problem(10, 8) == etf_dimension_problem(10, 8) is not None
    with pytest.raises(UserError, match=r"^ETF needs d >= K-1 \(K=10, d=8\)$"):
        prototypes.generate("etf", 10, 8)
    with pytest.raises(NotApplicable, match=r"^ETF needs d >= K-1 \(K=10, d=8\)$"):
        create_method("etf", 10, 8)
    assert create_method("etf", 10, 9).prototypes.shape == (10, 9)
