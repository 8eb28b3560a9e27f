"""The Riemannian BB solver: finds a known optimum on the row spheres, reports a spent budget."""

from __future__ import annotations

import torch

from protobench.prototypes.solver import random_unit_rows, sphere_minimise, tangent


def _towards(A: torch.Tensor):
    """f(X) = -sum_i <x_i, a_i>: on unit rows its minimum is x_i = a_i / |a_i|."""

    def fg(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return -(X * A).sum(), -A

    return fg


def test_reaches_the_optimum_on_unit_rows():
    A = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sphere_minimise(_towards(A), random_unit_rows(5, 3, 1, torch.device("cpu")), max_iter=500, gtol=1e-10)
    assert res.converged and 0 < res.iterations < 500
    assert torch.allclose(res.X, torch.nn.functional.normalize(A, dim=1), atol=1e-8)


def test_spent_budget_is_not_converged():
    A = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sphere_minimise(_towards(A), random_unit_rows(5, 3, 1, torch.device("cpu")), max_iter=1, gtol=1e-14)
    assert not res.converged and res.iterations == 1


def test_random_rows_are_unit_and_seeded_and_tangent_is_orthogonal():
    X = random_unit_rows(6, 4, 3, torch.device("cpu"))
    assert X.dtype == torch.float64 and torch.allclose(X.norm(dim=1), torch.ones(6, dtype=torch.float64))
    assert torch.equal(X, random_unit_rows(6, 4, 3, torch.device("cpu")))
    G = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose((tangent(G, X) * X).sum(dim=1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
