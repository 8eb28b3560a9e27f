"""Hungarian matching equals brute force, follows permuted prototypes, counts changes."""

from __future__ import annotations

import itertools

import pytest
import torch

from protobench.heads.assignment import AssignmentResult, hungarian, match


def brute_force(Q: torch.Tensor, P: torch.Tensor) -> tuple[tuple[int, ...], float]:
    cos = torch.nn.functional.normalize(Q.double(), dim=1) @ torch.nn.functional.normalize(P.double(), dim=1).T
    K = Q.shape[0]
    best = max(itertools.permutations(range(K)), key=lambda perm: sum(cos[c, perm[c]].item() for c in range(K)))
    return best, sum(cos[c, best[c]].item() for c in range(K))


@pytest.mark.parametrize("K", [2, 3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_brute_force(K, seed):
    gen = torch.Generator().manual_seed(seed)
    # Unnormalised inputs with different scales: matching must use cosines, not dot products.
    Q = torch.randn(K, 4, generator=gen) * torch.rand(K, 1, generator=gen) * 10
    P = torch.randn(K, 4, generator=gen)
    expected, total = brute_force(Q, P)
    result = match(Q, P)
    assert tuple(result.assignment.tolist()) == expected
    assert result.total_cosine == pytest.approx(total, abs=1e-9)
    assert torch.equal(hungarian(Q, P), result.assignment)
    assert result.assignment.dtype == torch.int64 and result.changed == 0


def test_permuting_prototypes_permutes_assignment():
    gen = torch.Generator().manual_seed(5)
    Q, P = torch.randn(50, 8, generator=gen), torch.randn(50, 8, generator=gen)
    base = hungarian(Q, P)
    perm = torch.randperm(50, generator=gen)
    # Row i of P[perm] is old prototype perm[i]; so the new index of old prototype j is inverse[j].
    inverse = torch.argsort(perm)
    assert torch.equal(hungarian(Q, P[perm]), inverse[base])
    # And permuting classes permutes the rows of the assignment.
    assert torch.equal(hungarian(Q[perm], P), base[perm])


def test_identity_when_representatives_are_the_prototypes():
    P = torch.nn.functional.normalize(torch.randn(30, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    result = match(P, P)
    assert torch.equal(result.assignment, torch.arange(30))
    assert result.total_cosine == pytest.approx(30.0)


def test_changed_counts_classes_whose_prototype_moved():
    P = torch.eye(4)
    Q = P[[1, 0, 2, 3]]  # classes 0 and 1 swap prototypes
    result = match(Q, P, previous=torch.arange(4))
    assert isinstance(result, AssignmentResult)
    assert result.assignment.tolist() == [1, 0, 2, 3]
    assert result.changed == 2
    assert match(Q, P, previous=result.assignment).changed == 0
    assert match(Q, P, previous=torch.tensor([3, 2, 1, 0])).changed == 4
    assert match(Q, P).changed == 0


def test_float64_inputs_and_shape_errors():
    Q = torch.randn(6, 3, dtype=torch.float64)
    assert sorted(hungarian(Q, Q.flip(0)).tolist()) == list(range(6))
    with pytest.raises(ValueError, match="as many representatives"):
        hungarian(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="previous assignment"):
        match(Q, Q, previous=torch.arange(5))
