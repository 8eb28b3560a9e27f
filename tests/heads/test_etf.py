"""Fixed simplex ETF with the dot-regression loss."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from protobench.heads import create_method
from protobench.methods import NotApplicable


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_not_applicable_below_k_minus_one() -> None:
    with pytest.raises(NotApplicable, match=r"ETF needs d >= K-1 \(K=5, d=3\)"):
        create_method("etf", 5, 3)


def test_simplex_in_exactly_k_minus_one_dims() -> None:
    method = create_method("etf", 5, 4, seed=0)
    cos = method.prototypes @ method.prototypes.T
    off = cos[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -0.25), atol=1e-5)
    assert method.hyperparameters() == {}


def _hand_etf() -> torch.nn.Module:
    method = create_method("etf", 3, 2, seed=0)
    s = math.sqrt(3) / 2
    method.prototypes.copy_(torch.tensor([[1.0, 0.0], [-0.5, s], [-0.5, -s]]))
    return method


def test_loss_hand_case() -> None:
    method = _hand_etf()
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    # One sample per class: gamma = 1, no scaling. Residuals 0 and sqrt(3)/2 - 1 = -0.1339746;
    # 0.5 * mean(0, 0.0179492) = 0.0044873
    assert method.loss(h, y).item() == pytest.approx(0.0044873, abs=1e-6)


def test_scores_and_prediction() -> None:
    method = _hand_etf().eval()
    h = method(method.prototypes[torch.tensor([2, 0, 1])])
    assert method.predict(h).tolist() == [2, 0, 1]
    assert torch.allclose(method.scores(torch.tensor([[1.0, 0.0]])), torch.tensor([[1.0, -0.5, -0.5]]))


def test_gradients_reach_bn_and_z_not_the_frame() -> None:
    method = create_method("etf", 4, 5, seed=0)
    before = method.prototypes.clone()
    z = torch.randn(8, 5, requires_grad=True)
    opt = torch.optim.SGD([z, *method.parameters()], lr=1.0)
    method.loss(method(z), torch.arange(8) % 4).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert method.bn.weight.grad is not None and method.bn.weight.grad.abs().sum() > 0
    assert method.bn.bias.grad is not None
    assert not method.prototypes.requires_grad
    opt.step()
    assert torch.equal(method.prototypes, before)


def test_state_dict_round_trip() -> None:
    method = create_method("etf", 4, 5, seed=0)
    method(torch.randn(8, 5))
    restored = create_method("etf", 4, 5, seed=3)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.prototypes, method.prototypes)
    assert torch.equal(restored.bn.running_var, method.bn.running_var)
