"""Hand-computed cases for the shared losses and batch helpers."""

from __future__ import annotations

import math

import pytest
import torch

from protobench.heads.losses import (
    _SquaredCosine,
    _UnitRows,
    class_counts,
    dot_regression_loss,
    random_unit_rows,
    squared_cosine_loss,
    unit_rows,
)


def test_squared_cosine_is_a_sum_over_the_batch() -> None:
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # cosines 1, 0, 1/sqrt(2): (1-1)^2 + (1-0)^2 + (1-0.70710678)^2 = 0 + 1 + 0.08578644
    loss, unit = squared_cosine_loss(h, targets)
    assert loss.item() == pytest.approx(1.08578644, abs=1e-6)
    assert torch.allclose(unit, unit_rows(h)) and not unit.requires_grad


def test_squared_cosine_ignores_lengths() -> None:
    loss, _ = squared_cosine_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_squared_cosine_gradient_is_the_derivative_of_the_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = unit_rows(torch.randn(6, 3, generator=gen)).double()
    assert torch.autograd.gradcheck(lambda x: _SquaredCosine.apply(x, targets)[0], (h,))
    # ... and the one autograd derives from the textbook formula, in float32 as training runs it.
    x = h.detach().float().requires_grad_()
    squared_cosine_loss(x * 2.0, targets.float())[0].backward()
    y = h.detach().float().requires_grad_()
    ((1 - torch.nn.functional.cosine_similarity(y * 2.0, targets.float(), dim=1)) ** 2).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-6)


def test_unit_rows_ignore_lengths_and_keep_zero_rows() -> None:
    h = unit_rows(torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
    assert h.tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_unit_rows_gradient_matches_normalize() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_UnitRows.apply, (x,))
    weights = torch.randn(5, 4, generator=gen)
    a = x.detach().float().requires_grad_()
    b = x.detach().float().requires_grad_()
    (unit_rows(a) * weights).sum().backward()
    (torch.nn.functional.normalize(b, dim=1) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_dot_regression_matches_the_unscaled_formula_on_random_data() -> None:
    # The implementation folds the target lengths into s^2; compare with Yang et al.'s form.
    gen = torch.Generator().manual_seed(0)
    w_all = unit_rows(torch.randn(5, 4, generator=gen))
    h = torch.randn(16, 4, generator=gen)
    y = torch.randint(0, 4, (16,), generator=gen)  # class 4 absent
    counts = torch.bincount(y, minlength=5).float()
    gamma = 16 / (counts > 0).sum()
    w = w_all[y] * torch.sqrt(gamma / counts[y]).unsqueeze(1)
    h_len = h.norm(dim=1)
    reference = 0.5 * (((h * w).sum(1) - w.norm(dim=1) * h_len) ** 2 / h_len).mean()
    assert dot_regression_loss(h, w_all, y).item() == pytest.approx(reference.item(), rel=1e-5)
    # Its gradient, with the norms detached as the loss defines them.
    a = h.clone().requires_grad_()
    dot_regression_loss(a, w_all, y).backward()
    b = h.clone().requires_grad_()
    w_len, b_len = w.norm(dim=1), b.detach().norm(dim=1)
    (0.5 * (((b * w).sum(1) - w_len * b_len) ** 2 / b_len).mean()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_dot_regression_per_batch_scaling() -> None:
    w_all = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # K = 3, class 2 absent
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, 0.8]])
    y = torch.tensor([0, 0, 0, 1])
    # n_0 = 3, n_1 = 1, two distinct classes: gamma = 4 / 2 = 2 (not 4 / K = 4/3).
    # Targets lengths sqrt(2/3) (class 0) and sqrt(2) (class 1); ||h|| = 1 for every row.
    # Residuals h.w - ||w||: 0; -sqrt(2/3); (0.6-1) sqrt(2/3); (0.8-1) sqrt(2)
    # Squares: 0, 2/3, 0.16*2/3 = 0.1066667, 0.04*2 = 0.08; mean 0.2133333; times 0.5:
    assert dot_regression_loss(h, w_all, y).item() == pytest.approx(0.10666667, abs=1e-6)


def test_dot_regression_divides_by_feature_length_and_detaches_norms() -> None:
    w_all = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    h = torch.tensor([[0.0, 2.0]], requires_grad=True)
    loss = dot_regression_loss(h, w_all, torch.tensor([0]))
    # One class, one sample: scale 1. (0 - 1*2)^2 / 2 = 2, times 0.5 = 1.
    assert loss.item() == pytest.approx(1.0, abs=1e-6)
    loss.backward()
    # With ||w|| ||h|| detached the gradient is (h.w - ||w|| ||h||) / ||h|| * w = -1 * [1, 0];
    # differentiating the norms too would add a component along h = [0, 1].
    assert torch.allclose(h.grad, torch.tensor([[-1.0, 0.0]]), atol=1e-6)


def test_dot_regression_is_zero_on_target() -> None:
    w_all = torch.eye(3)
    y = torch.tensor([2, 0, 2])
    assert dot_regression_loss(w_all[y], w_all, y).item() == pytest.approx(0.0, abs=1e-7)


def test_class_counts() -> None:
    y = torch.tensor([2, 0, 2, 2])
    assert class_counts(y, 4).tolist() == [1.0, 0.0, 3.0, 0.0]


def test_random_unit_rows_reproducible_and_purpose_specific() -> None:
    a = random_unit_rows(5, 3, seed=1, purpose="x")
    assert torch.equal(a, random_unit_rows(5, 3, seed=1, purpose="x"))
    assert not torch.allclose(a, random_unit_rows(5, 3, seed=1, purpose="y"))
    assert torch.allclose(a.norm(dim=1), torch.ones(5))
    # Not the bare-seed stream the prototype generators start from.
    bare = torch.nn.functional.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    assert not torch.allclose(a, bare)
    assert math.isclose(float(a.norm(dim=1)[0]), 1.0, rel_tol=1e-6)
