"""DL2PA and its fixed-assignment ablation: loss, prediction, representatives, matching, state."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch

from protobench.core.errors import UserError
from protobench.heads import create_method
from protobench.heads.assignment import hungarian
from protobench.heads.dl2pa import DL2PA, DL2PAStatic
from protobench.prototypes import generate


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _hand_head(loss_family: str = "balanced", momentum: float = 0.9) -> DL2PA:
    """K = 3, d = 2 with hand-set prototypes and the non-identity assignment 0->2, 1->0, 2->1."""
    method = create_method("dl2pa", 3, 2, seed=0, loss_family=loss_family, momentum=momentum)
    assert isinstance(method, DL2PA)
    method.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    method.assignment.copy_(torch.tensor([2, 0, 1]))
    method.refresh_class_targets()
    return method


def test_defaults_and_hyperparameters() -> None:
    method = create_method("dl2pa", 4, 3, seed=0)
    later = {
        "loss": "sq-cos", "tau": 0.1, "match_every_steps": 0, "match_steps_until_epoch": 1, "prototype_kind": "uniform"
    }  # fmt: skip
    assert DL2PA.card.defaults == {"t": 2.0, "momentum": 0.9} and DL2PA.card.later_defaults == later
    assert method.hyperparameters() == {"t": 2.0, "momentum": 0.9, **later}
    assert create_method("dl2pa", 4, 3, seed=0, t=5.0, momentum=0.5).hyperparameters() == {
        "t": 5.0,
        "momentum": 0.5,
        **later,
    }


def test_prototypes_are_the_uniform_generator_and_assignment_is_hungarian_on_q() -> None:
    method = create_method("dl2pa", 10, 4, seed=3, t=3.0)
    assert torch.equal(method.prototypes, generate("uniform", 10, 4, 3, t=3.0))
    assert torch.equal(method.assignment, hungarian(method.representatives, method.prototypes))
    assert sorted(method.assignment.tolist()) == list(range(10))
    assert torch.allclose(method.representatives.norm(dim=1), torch.ones(10))
    other = create_method("dl2pa", 10, 4, seed=4)
    assert not torch.equal(method.assignment, other.assignment)  # seeded: a different permutation


def test_balanced_loss_uses_assigned_prototype() -> None:
    method = _hand_head()
    z = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1])
    # class 0 -> p_2 = [-1, 0]: cos 1, loss 0; class 1 -> p_0 = [1, 0]: cos 1/sqrt(2), (1-0.7071)^2.
    assert method.loss(method(z), y).item() == pytest.approx(0.08578644, abs=1e-6)


def test_long_tailed_loss_is_dot_regression_on_bn_features() -> None:
    method = _hand_head("long-tailed")
    assert method.bn is not None
    h = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # already normalised head features
    y = torch.tensor([2, 0])
    # One sample each: gamma = 1, scales 1. class 2 -> p_1 = [0, 1]: 0; class 0 -> p_2: 0.
    assert method.loss(h, y).item() == pytest.approx(0.0, abs=1e-7)
    # class 1 -> p_0 = [1, 0], feature [0, 1]: 0.5 * mean((0 - 1)^2, 0) = 0.25
    assert method.loss(h, torch.tensor([1, 0])).item() == pytest.approx(0.25, abs=1e-6)
    out = method(torch.randn(8, 2))
    assert torch.allclose(out.norm(dim=1), torch.ones(8), atol=1e-5)


def test_prediction_follows_the_assignment() -> None:
    method = _hand_head().eval()
    # Feature equal to class c's assigned prototype P[A[c]] is predicted as c.
    z = method.prototypes[method.assignment] * 3.0
    assert method.predict(method(z)).tolist() == [0, 1, 2]
    assert method.predict(method(torch.tensor([[1.0, 0.0]]))).tolist() == [1]


@pytest.mark.parametrize("loss_family", ["balanced", "long-tailed"])
def test_gradients_reach_only_what_learns(loss_family: str) -> None:
    method = create_method("dl2pa", 5, 4, seed=0, loss_family=loss_family)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    z = torch.randn(16, 4, requires_grad=True)
    y = torch.arange(16) % 5
    params = list(method.parameters())
    assert len(params) == (2 if loss_family == "long-tailed" else 0)  # BN weight and bias only
    opt = torch.optim.SGD([z, *params], lr=0.5)
    method.loss(method(z), y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    opt.step()
    for name in ("prototypes", "assignment", "representatives"):
        assert not method._buffers[name].requires_grad
        assert torch.equal(method.state_dict()[name], before[name])


def test_representative_update_is_ema_of_class_means_with_duplicates() -> None:
    method = _hand_head(momentum=0.5)
    method.representatives.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    h = torch.tensor([[0.0, 2.0], [1.0, 0.0], [-3.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    method.after_step(h, y)
    # class 0: normalised features [0,1], [1,0], mean [0.5, 0.5];
    #   q_0 = normalise(0.5 [1,0] + 0.5 [0.5,0.5]) = normalise([0.75, 0.25]) = [0.9486833, 0.3162278]
    #   (one sample per class, as in the authors' code, would give [0.7071, 0.7071] or [1, 0]).
    # class 1: q_1 = normalise(0.5 [0,1] + 0.5 [-1,0]) = [-0.7071068, 0.7071068]
    # class 2: absent, unchanged.
    expected = torch.tensor([[0.9486833, 0.3162278], [-0.7071068, 0.7071068], [1.0, 0.0]])
    assert torch.allclose(method.representatives, expected, atol=1e-6)


def test_ema_weights_the_old_representative_by_the_momentum() -> None:
    # m = 0.8 tells m from 1 - m (0.5 cannot): q_0 = normalise(0.8 [1,0] + 0.2 [0,1]).
    method = _hand_head(momentum=0.8)
    method.representatives.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    method.after_step(torch.tensor([[0.0, 2.0]]), torch.tensor([0]))
    expected = torch.tensor([[0.9701425, 0.2425356], [0.0, 1.0], [1.0, 0.0]])
    assert torch.allclose(method.representatives, expected, atol=1e-6)


def test_momentum_zero_replaces_present_and_keeps_absent() -> None:
    method = _hand_head(momentum=0.0)
    method.representatives.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    method.after_step(torch.tensor([[0.0, 2.0], [0.0, 5.0]]), torch.tensor([1, 1]))
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(method.representatives, expected)
    method.after_step(torch.tensor([[0.0, -2.0]]), torch.tensor([0]))
    expected = torch.tensor([[0.0, -1.0], [0.0, 1.0], [1.0, 0.0]])
    assert torch.allclose(method.representatives, expected)


def test_after_epoch_is_the_hungarian_and_brute_force_optimum() -> None:
    torch.manual_seed(0)
    method = create_method("dl2pa", 5, 3, seed=1)
    reps = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    method.representatives.copy_(reps)
    previous = method.assignment.clone()
    diag = method.after_epoch()
    assert torch.equal(method.assignment, hungarian(reps, method.prototypes))
    cos = reps @ method.prototypes.T
    best = max(itertools.permutations(range(5)), key=lambda p: float(sum(cos[c, p[c]] for c in range(5))))
    assert method.assignment.tolist() == list(best)
    assert diag["assignment_changed"] == int((method.assignment != previous).sum())
    expected_cos = float(sum(cos[c, best[c]] for c in range(5)) / 5)
    assert diag["rep_proto_cosine"] == pytest.approx(expected_cos, abs=1e-5)
    # Matching again without new features changes nothing.
    assert method.after_epoch()["assignment_changed"] == 0


def test_training_features_drive_the_matching() -> None:
    # Features of class c sit exactly on prototype c: after enough steps the matching is c -> c.
    method = create_method("dl2pa", 6, 3, seed=2, momentum=0.5)
    y = torch.arange(6).repeat(3)
    for _ in range(30):
        method.after_step(method.prototypes[y] + 0.01 * torch.randn(18, 3), y)
    method.after_epoch()
    assert method.assignment.tolist() == list(range(6))


def test_static_ablation_never_rematches() -> None:
    method = create_method("dl2pa-static", 6, 3, seed=2, momentum=0.0)
    dynamic = create_method("dl2pa", 6, 3, seed=2, momentum=0.0)
    assert isinstance(method, DL2PAStatic)
    assert torch.equal(method.assignment, dynamic.assignment)  # same start as dl2pa
    start = method.assignment.clone()
    y = torch.arange(6).repeat(2)
    for shift in range(1, 4):
        # Features of class c sit on prototype (A(c) + shift) mod K: matching would move every class.
        feats = method.prototypes[(start[y] + shift) % 6]
        for m in (method, dynamic):
            m.after_step(feats, y)
        assert dynamic.after_epoch()["assignment_changed"] == 6
        assert method.after_epoch()["assignment_changed"] == 0
        assert torch.equal(method.assignment, start)
        assert not torch.equal(dynamic.assignment, start)


def test_state_dict_round_trip() -> None:
    method = create_method("dl2pa", 6, 3, seed=5, loss_family="long-tailed")
    method.after_step(torch.randn(12, 3), torch.arange(12) % 6)
    method.representatives.copy_(torch.nn.functional.normalize(torch.randn(6, 3), dim=1))
    method.after_epoch()
    method(torch.randn(12, 3))  # moves BN running stats
    restored = create_method("dl2pa", 6, 3, seed=9, loss_family="long-tailed")
    restored.load_state_dict(method.state_dict())
    for name in ("prototypes", "assignment", "representatives", "bn.running_mean"):
        assert torch.equal(restored.state_dict()[name], method.state_dict()[name])
    assert restored.assignment.dtype == torch.long
    # The derived P[A] follows the loaded assignment, so predictions do too.
    assert torch.equal(restored.class_anchors(), method.prototypes[method.assignment])
    z = torch.randn(20, 3)
    assert torch.equal(restored.eval().predict(restored(z)), method.eval().predict(method(z)))


def test_rematching_moves_the_loss_targets_and_predictions() -> None:
    method = create_method("dl2pa", 4, 3, seed=0)
    method.representatives.copy_(method.prototypes[torch.tensor([3, 2, 1, 0])])
    method.after_epoch()
    assert method.assignment.tolist() == [3, 2, 1, 0]
    assert torch.equal(method.class_anchors(), method.prototypes[torch.tensor([3, 2, 1, 0])])
    assert method.predict(method.prototypes).tolist() == [3, 2, 1, 0]


def test_step_bookkeeping_reuses_the_loss_features_exactly() -> None:
    torch.manual_seed(0)
    trained, fresh = create_method("dl2pa", 5, 4, seed=0), create_method("dl2pa", 5, 4, seed=0)
    for _ in range(3):
        h, y = torch.randn(12, 4) * 3, torch.randint(0, 5, (12,))
        loss, memo = trained.step_loss(h, y)  # the unit features the update reuses
        assert torch.equal(loss, trained.loss(h, y)) and len(memo) == 1
        trained.after_step(h.detach(), y, memo)
        fresh.after_step(h, y)  # no memo: recomputed
        assert torch.allclose(trained.representatives, fresh.representatives, atol=1e-6)
    # The memo is what after_step uses: features it was not computed from change the update.
    _, other = trained.step_loss(torch.randn(12, 4), y)
    before = trained.representatives.clone()
    fresh.after_step(h, y)
    trained.after_step(h, y, other)
    assert not torch.allclose(trained.representatives, fresh.representatives)
    assert not torch.equal(trained.representatives, before)


def test_long_tailed_loss_hands_off_nothing() -> None:
    method = create_method("dl2pa", 4, 3, seed=0, loss_family="long-tailed")
    h = method(torch.randn(8, 3))
    assert method.step_loss(h, torch.arange(8) % 4)[1] == ()


def test_bad_momentum_is_a_user_error() -> None:
    from protobench.core.errors import UserError

    with pytest.raises(UserError, match="momentum"):
        create_method("dl2pa", 4, 3, momentum=1.0)
    with pytest.raises(UserError, match="loss family"):
        create_method("dl2pa", 4, 3, loss_family="lt")


# ---------------------------------------------------------------- beyond the paper: loss form, matching schedule


@pytest.mark.parametrize("name", ["hpn", "dl2pa", "dl2pa-static", "hpn-dynamic"])
def test_cos_ce_is_cross_entropy_over_cosines_to_the_assigned_prototypes(name: str) -> None:
    method = create_method(name, 4, 3, seed=1, loss="cos-ce", tau=0.2)
    assert method.loss_reduction == "mean" and create_method(name, 4, 3, seed=1).loss_reduction == "sum"
    h = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    loss, memo = method.step_loss(h, y)
    cosines = torch.nn.functional.normalize(h, dim=1) @ method.prototypes[method.assignment].T
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(cosines / 0.2, y).item(), rel=1e-6)
    assert len(memo) == 1 and not memo[0].requires_grad
    assert torch.allclose(memo[0], torch.nn.functional.normalize(h.detach(), dim=1))
    loss.backward()
    assert h.grad is not None and torch.isfinite(h.grad).all()


def test_loss_options_are_checked() -> None:
    with pytest.raises(UserError, match=r"^method 'dl2pa': unknown loss 'ce'; allowed: sq-cos, cos-ce$"):
        create_method("dl2pa", 4, 3, loss="ce")
    with pytest.raises(UserError, match="balanced"):
        create_method("hpn", 4, 3, loss="cos-ce", loss_family="long-tailed")
    with pytest.raises(UserError, match="tau"):
        create_method("hpn", 4, 3, loss="cos-ce", tau=0.0)
    with pytest.raises(UserError, match="match_every_steps"):
        create_method("dl2pa", 4, 3, match_every_steps=-1)
    with pytest.raises(UserError, match="has no option 'match_every_steps'"):
        create_method("dl2pa-static", 4, 3, match_every_steps=2)


def test_after_update_re_matches_on_schedule_and_counts_for_the_epoch() -> None:
    method = create_method("dl2pa", 5, 3, seed=0, match_every_steps=2, match_steps_until_epoch=1)
    reps = torch.nn.functional.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    method.representatives.copy_(reps)
    before = method.assignment.clone()
    method.after_update(1, 0)  # not a multiple of 2: nothing
    assert torch.equal(method.assignment, before) and method.step_matching.tolist() == [0, 0]
    method.after_update(2, 0)
    assert torch.equal(method.assignment, hungarian(reps, method.prototypes))
    moved = int((method.assignment != before).sum())
    method.after_update(4, 1)  # past match_steps_until_epoch: nothing
    assert method.step_matching.tolist() == [1, moved]
    diag = method.after_epoch()
    assert (diag["step_rematches"], diag["step_classes_moved"]) == (1, moved) and diag["assignment_changed"] == 0
    assert method.step_matching.tolist() == [0, 0]
    default = create_method("dl2pa", 5, 3, seed=0)
    assert "step_matching" not in default.state_dict() and "step_rematches" not in default.after_epoch()


@pytest.mark.parametrize("name", ["dl2pa", "dl2pa-static"])
def test_prototype_kind_picks_the_generator_and_leaves_the_rest(name: str) -> None:
    uniform = create_method(name, 10, 3, seed=2)
    for kind in ("hpn", "random"):
        other = create_method(name, 10, 3, seed=2, prototype_kind=kind)
        assert torch.equal(other.prototypes, generate(kind, 10, 3, 2))
        assert other.hyperparameters()["prototype_kind"] == kind
        # Same seeded representatives; the assignment is the Hungarian solution on them for these prototypes.
        assert torch.equal(other.representatives, uniform.representatives)
        assert torch.equal(other.assignment, hungarian(other.representatives, other.prototypes))
    with pytest.raises(
        UserError, match=r"^method 'dl2pa': unknown prototype_kind 'etf'; allowed: uniform, hpn, random$"
    ):
        create_method("dl2pa", 10, 3, prototype_kind="etf")
