"""EBV: fixed near-orthogonal vectors, cosine / temperature, label-smoothed cross-entropy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from protobench.heads import create_method
from protobench.heads.ebv import EBV


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_defaults_and_vectors() -> None:
    assert EBV.card.defaults == {"temperature": 0.07, "label_smoothing": 0.1, "tau": None}
    method = create_method("ebv", 4, 8, seed=0)
    assert method.hyperparameters() == {"temperature": 0.07, "label_smoothing": 0.1, "tau": None}
    cos = method.prototypes @ method.prototypes.T
    assert cos[~torch.eye(4, dtype=torch.bool)].abs().max() <= 0.002 + 1e-6


def _hand_ebv(label_smoothing: float) -> EBV:
    method = create_method("ebv", 3, 4, seed=0, temperature=0.5, label_smoothing=label_smoothing)
    method.prototypes.copy_(torch.eye(4)[:3])
    return method


def test_loss_hand_case() -> None:
    z = torch.tensor([[3.0, 0.0, 0.0, 0.0]])  # cosines (1, 0, 0) whatever the length; logits (2, 0, 0)
    y = torch.tensor([0])
    # -log p_0 = log(1 + 2 e^-2) = 0.2395448, -log p_1 = -log p_2 = 2.2395448
    assert _hand_ebv(0.0).loss(z, y).item() == pytest.approx(0.2395448, abs=1e-6)
    # smoothing 0.1: 0.9 * 0.2395448 + 0.1 * mean(0.2395448, 2.2395448, 2.2395448) = 0.3728781
    assert _hand_ebv(0.1).loss(z, y).item() == pytest.approx(0.3728781, abs=1e-6)


def test_prediction_and_scores() -> None:
    method = create_method("ebv", 5, 8, seed=1).eval()
    z = method.prototypes[torch.tensor([4, 0, 2])] * 5.0
    assert method.predict(method(z)).tolist() == [4, 0, 2]
    assert method.scores(z)[0, 4].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_gradients_and_buffers() -> None:
    method = create_method("ebv", 4, 8, seed=0)
    assert list(method.parameters()) == []
    before = method.prototypes.clone()
    z = torch.randn(8, 8, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    method.loss(method(z), torch.arange(8) % 4).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not method.prototypes.requires_grad
    opt.step()
    assert torch.equal(method.prototypes, before)


def test_state_dict_round_trip() -> None:
    method = create_method("ebv", 4, 8, seed=0)
    restored = create_method("ebv", 4, 8, seed=1)
    assert not torch.equal(restored.prototypes, method.prototypes)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.prototypes, method.prototypes)
