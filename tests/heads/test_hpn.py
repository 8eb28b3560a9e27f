"""HPN (static c -> c) and the hpn-dynamic ablation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from protobench.core.errors import UserError
from protobench.heads import create_method
from protobench.heads.assignment import hungarian
from protobench.heads.hpn import HPN, HPNDynamic
from protobench.prototypes import generate


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_hpn_prototypes_and_static_assignment() -> None:
    method = create_method("hpn", 6, 3, seed=1)
    assert isinstance(method, HPN)
    assert torch.equal(method.prototypes, generate("hpn", 6, 3, 1))
    assert method.assignment.tolist() == list(range(6))
    assert HPN.card.defaults == {} and method.hyperparameters() == {"loss": "sq-cos", "tau": 0.1}
    before = method.assignment.clone()
    method.after_step(torch.randn(12, 3), torch.arange(12) % 6)
    assert method.after_epoch() == {}
    assert torch.equal(method.assignment, before)


def test_hpn_balanced_loss_hand_case() -> None:
    method = create_method("hpn", 2, 2, seed=0)
    method.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    method.refresh_class_targets()
    z = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 1])
    # cosines to p_0, p_0, p_1: 1/sqrt(2), 1, -1 -> (0.2928932)^2 + 0 + 2^2 = 4.0857864 (a sum)
    assert method(z) is z  # balanced: the raw embedding
    assert method.loss(method(z), y).item() == pytest.approx(4.0857864, abs=1e-5)


def test_hpn_long_tailed_uses_bn_and_dot_regression() -> None:
    method = create_method("hpn", 2, 2, seed=0, loss_family="long-tailed")
    method.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    method.refresh_class_targets()
    h = torch.tensor([[0.6, 0.8], [0.6, 0.8], [1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    # n = (2, 1), gamma = 3/2: lengths sqrt(3/4) and sqrt(3/2).
    # residuals (0.6-1) sqrt(.75) twice, (0-1) sqrt(1.5): squares 0.12, 0.12, 1.5; mean 0.58; x0.5
    assert method.loss(h, y).item() == pytest.approx(0.29, abs=1e-6)
    z = torch.randn(8, 2, requires_grad=True)
    method.loss(method(z), torch.arange(8) % 2).backward()
    assert method.bn.weight.grad is not None and z.grad is not None
    assert not method.prototypes.requires_grad


def test_hpn_gradients_and_buffers() -> None:
    method = create_method("hpn", 4, 3, seed=0)
    assert list(method.parameters()) == []
    before = method.prototypes.clone()
    z = torch.randn(8, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    method.loss(method(z), torch.arange(8) % 4).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    opt.step()
    assert torch.equal(method.prototypes, before)


def test_hpn_prediction_is_nearest_prototype() -> None:
    method = create_method("hpn", 5, 3, seed=0).eval()
    z = method.prototypes[torch.tensor([3, 1, 4])] * 2.0
    assert method.predict(method(z)).tolist() == [3, 1, 4]


def test_hpn_dynamic_matches_on_hpn_prototypes() -> None:
    method = create_method("hpn-dynamic", 5, 3, seed=2)
    assert isinstance(method, HPNDynamic)
    assert HPNDynamic.card.defaults == {"momentum": 0.9}
    assert method.hyperparameters() == {
        "momentum": 0.9, "loss": "sq-cos", "tau": 0.1, "match_every_steps": 0, "match_steps_until_epoch": 1
    }  # fmt: skip
    assert torch.equal(method.prototypes, generate("hpn", 5, 3, 2))
    reps = torch.nn.functional.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    method.representatives.copy_(reps)
    diag = method.after_epoch()
    assert set(diag) == {"assignment_changed", "rep_proto_cosine"}
    assert torch.equal(method.assignment, hungarian(reps, method.prototypes))
    with pytest.raises(UserError, match="no option 't'"):
        create_method("hpn-dynamic", 5, 3, t=2.0)  # HPN's generator has no t


def test_hpn_state_dict_round_trip() -> None:
    method = create_method("hpn-dynamic", 4, 3, seed=0)
    method.after_step(torch.randn(8, 3), torch.arange(8) % 4)
    method.after_epoch()
    restored = create_method("hpn-dynamic", 4, 3, seed=1)
    restored.load_state_dict(method.state_dict())
    for name in ("prototypes", "assignment", "representatives"):
        assert torch.equal(getattr(restored, name), getattr(method, name))
