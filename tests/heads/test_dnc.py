"""DNC: sub-centroids, balanced Sinkhorn clustering within each class, momentum updates."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from protobench.heads import create_method
from protobench.heads.dnc import DNC


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_defaults_and_layout() -> None:
    method = create_method("dnc", 5, 3, seed=0)
    assert (
        method.hyperparameters()
        == DNC.card.defaults
        == {
            "sub_centroids": 4,
            "temperature": 0.1,
            "momentum": 0.999,
            "compactness_weight": 0.01,
            "sinkhorn_iterations": 10,
            "sinkhorn_epsilon": 0.05,
        }
    )
    assert method.centroids.shape == (20, 3)
    assert torch.allclose(method.centroids.norm(dim=1), torch.ones(20))
    assert not torch.equal(method.centroids, create_method("dnc", 5, 3, seed=1).centroids)


def test_loss_hand_case_nearest_class_mean() -> None:
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=1, temperature=0.5)
    method.centroids.copy_(torch.eye(2))
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 0])
    # logits (2, 0): CE 0.1269280; logits (1.4142, 1.4142): CE log 2 = 0.6931472.
    # compactness (1 - 1)^2 and (1 - 0.7071068)^2 = 0.0857864.
    # mean CE 0.4100376 + 0.01 * mean compactness 0.0428932 = 0.4104665
    assert method.loss(z, y).item() == pytest.approx(0.4104665, abs=1e-6)


def test_scores_take_the_best_sub_centroid_and_predict_nearest() -> None:
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=2, temperature=0.5).eval()
    method.centroids.copy_(torch.tensor([_unit(0), _unit(90), _unit(180), _unit(270)]))
    z = torch.tensor([_unit(80), _unit(185), [0.0, -3.0]])
    scores = method.scores(z)
    # 80 degrees: class 0's best is 90 (cos 10 deg), class 1's best is 180 (cos 100 deg); / 0.5
    expected = [2 * math.cos(math.radians(10)), 2 * math.cos(math.radians(100))]
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert method.predict(method(z)).tolist() == [0, 1, 1]


def test_sinkhorn_assignment_is_balanced_within_each_class() -> None:
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=2)
    method.centroids.copy_(torch.tensor([_unit(0), _unit(90), _unit(180), _unit(270)]))
    # Class 0: four features all nearer sub-centroid 0 (0..30 degrees); class 1: two near 180.
    z = torch.tensor([_unit(0), _unit(30), _unit(10), _unit(20), _unit(185), _unit(175)])
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    cos = method._cosines(z)
    assert cos.view(6, 2, 2)[torch.arange(6), y].argmax(dim=1).tolist() == [0] * 6  # greedy would collapse
    # Balanced: two each in class 0 (the two closest to 90 degrees go there), one each in class 1.
    slots = method.sinkhorn_slots(cos, y)
    assert slots[:4].tolist() == [0, 1, 0, 1]
    assert sorted(slots[4:].tolist()) == [2, 3]
    plan = method.sinkhorn_plan(cos, y)
    assert torch.allclose(plan.sum(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(plan.sum(dim=0), torch.tensor([2.0, 2.0, 1.0, 1.0]), atol=0.1)
    assert plan[:4, 2:].abs().max() < 1e-12 and plan[4:, :2].abs().max() < 1e-12  # only own class


def test_sinkhorn_balances_a_random_skewed_batch_with_defaults() -> None:
    method = create_method("dnc", 4, 4, seed=0)  # class 3 absent from the batch
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 8 + [1] * 4 + [2] * 12)
    z = method.centroids.view(4, 4, 4)[y, 0] + 0.3 * torch.randn(24, 4, generator=gen)
    slots = method.sinkhorn_slots(method._cosines(z), y)
    assert torch.equal(slots // 4, y)
    counts = torch.zeros(16).index_add_(0, slots, torch.ones(24)).view(4, 4)
    assert counts.tolist() == [[2, 2, 2, 2], [1, 1, 1, 1], [3, 3, 3, 3], [0, 0, 0, 0]]
    assert torch.isfinite(method.sinkhorn_plan(method._cosines(z), y)).all()


def test_sinkhorn_stays_within_each_class_for_a_tiny_epsilon() -> None:
    # epsilon 0.001: exp((cos - 1) / epsilon) underflows to 0 for every sub-centroid of a feature
    # far from its class; its slot must still be one of its own class's, and nothing may be NaN.
    method = create_method("dnc", 3, 4, seed=0, sinkhorn_epsilon=0.001)
    gen = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1, 2] * 6)
    z = -method.centroids.view(3, 4, 4)[y, 0] + 0.1 * torch.randn(18, 4, generator=gen)  # far away
    cos = method._cosines(z)
    own = torch.exp((cos - 1) / 0.001).view(18, 3, 4)[torch.arange(18), y]
    assert (own == 0).all(dim=1).any()  # the case this test is about: a row with nothing left
    assert torch.isfinite(method.sinkhorn_plan(cos, y)).all()
    assert torch.equal(method.sinkhorn_slots(cos, y) // 4, y)


def test_step_update_reuses_the_loss_clustering_exactly(monkeypatch) -> None:
    torch.manual_seed(0)
    trained, fresh = create_method("dnc", 3, 4, seed=0, momentum=0.5), create_method("dnc", 3, 4, seed=0, momentum=0.5)
    original = DNC._sinkhorn
    calls = []
    monkeypatch.setattr(DNC, "_sinkhorn", lambda self, *a: calls.append(1) or original(self, *a))
    for _ in range(3):
        h, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
        loss, memo = trained.step_loss(h, y)
        assert torch.equal(loss, trained.loss(h, y))
        unit, slots = memo
        assert torch.equal(slots // 4, y)  # each row clustered among its own class's sub-centroids
        calls.clear()
        trained.after_step(h.detach(), y, memo)
        assert calls == []  # the hand-off: no second Sinkhorn run
        fresh.after_step(h, y)
        assert calls == [1]  # without a memo the update clusters itself
        assert torch.allclose(trained.centroids, fresh.centroids, atol=1e-6)


def test_momentum_update_hand_case() -> None:
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=1, momentum=0.5)
    method.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    method.after_step(torch.tensor([[0.0, 3.0], [3.0, 0.0]]), torch.tensor([0, 0]))
    # mean direction of class 0: [0.7071, 0.7071]; normalise(0.5 [1,0] + 0.5 [0.7071, 0.7071])
    # = normalise([0.8535534, 0.3535534]) = [0.9238795, 0.3826834] (22.5 degrees); class 1 absent.
    expected = torch.tensor([[0.9238795, 0.3826834], [0.0, 1.0]])
    assert torch.allclose(method.centroids, expected, atol=1e-6)


def test_centroid_ema_weights_the_old_centroid_by_the_momentum() -> None:
    # m = 0.8 tells m from 1 - m (0.5 cannot): c_0 = normalise(0.8 [1,0] + 0.2 [0,1]).
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=1, momentum=0.8)
    method.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    method.after_step(torch.tensor([[0.0, 3.0]]), torch.tensor([0]))
    assert torch.allclose(method.centroids, torch.tensor([[0.9701425, 0.2425356], [0.0, 1.0]]), atol=1e-6)


def test_update_moves_only_the_assigned_sub_centroids() -> None:
    method = create_method("dnc", 2, 2, seed=0, sub_centroids=2, momentum=0.0)
    start = torch.tensor([_unit(0), _unit(90), _unit(180), _unit(270)])
    method.centroids.copy_(start)
    z = torch.tensor([_unit(0), _unit(30), _unit(10), _unit(20)])
    method.after_step(z, torch.tensor([0, 0, 0, 0]))
    # momentum 0: each sub-centroid becomes the mean direction of its share (0,10 -> 5; 20,30 -> 25).
    assert torch.allclose(method.centroids[:2], torch.tensor([_unit(5), _unit(25)]), atol=1e-5)
    assert torch.equal(method.centroids[2:], start[2:])


def test_gradients_reach_z_not_the_centroids() -> None:
    method = create_method("dnc", 3, 4, seed=0)
    assert list(method.parameters()) == []
    before = method.centroids.clone()
    z = torch.randn(9, 4, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    method.loss(method(z), torch.arange(9) % 3).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not method.centroids.requires_grad
    opt.step()
    assert torch.equal(method.centroids, before)


def test_state_dict_round_trip() -> None:
    method = create_method("dnc", 3, 4, seed=0, momentum=0.5)
    method.after_step(torch.randn(9, 4), torch.arange(9) % 3)
    restored = create_method("dnc", 3, 4, seed=1, momentum=0.5)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.centroids, method.centroids)
