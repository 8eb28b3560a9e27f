"""One training step: the mixup rule, the loss -> bookkeeping hand-off, no host syncs, state in place."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from protobench.data.prepare import prepare_cell_data
from protobench.device import replays_graphs
from protobench.engine import build_learner, cell_loaders
from protobench.methods import METHODS, Method
from protobench.methods.base import StepMemo
from protobench.step import Learner, Mixup, forward_backward, step_function, train_step
from protobench.suites import load_suite
from tests.conftest import tiny_suite


def _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family):
    """A one-epoch tiny suite of ``loss_family`` (long-tailed: with mixup) and its data."""
    mixup = {"mixup_alpha": 1.0} if loss_family == "long-tailed" else {}
    train = {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, **mixup}
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", loss=loss_family, train=train)))
    return suite, prepare_cell_data(suite.data_settings, fmnist_dir, None)


# ---------------------------------------------------------------- the mixup rule


def test_mixup_dominant_labels_are_those_with_the_larger_weight() -> None:
    partner = torch.tensor([1, 0])
    assert Mixup.from_lambda(0.7, partner).own_dominant is True
    assert Mixup.from_lambda(0.5, partner).own_dominant is True  # a tie keeps the own labels
    assert Mixup.from_lambda(0.3, partner).own_dominant is False
    mix = Mixup.from_lambda(0.3, partner)
    assert (mix.weight, mix.partner_weight) == (0.3, pytest.approx(0.7))


def test_mixup_alpha_zero_or_less_is_no_mixup() -> None:
    rng = np.random.default_rng(0)
    assert Mixup.draw(rng, 0.0, 8, torch.device("cpu")) is None
    assert Mixup.draw(rng, -1.0, 8, torch.device("cpu")) is None
    mix = Mixup.draw(rng, 1.0, 8, torch.device("cpu"))
    assert mix is not None and sorted(mix.partner.tolist()) == list(range(8)) and 0 < mix.weight < 1


class _HandOffSpy(Method):
    """A head whose loss memo is made from its labels, so the test can tell which call it came from,
    and whose bookkeeping records what the step handed it."""

    def __init__(self) -> None:
        super().__init__(3, 3)
        self.seen: list[tuple[torch.Tensor, StepMemo]] = []

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(h, y)

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        return self.loss(h, y), (100 + y, h.detach().sum(dim=1) * 0 + y.float())

    def after_step(self, h: torch.Tensor, y: torch.Tensor, memo: StepMemo = ()) -> None:
        self.seen.append((y.clone(), tuple(m.clone() for m in memo)))


def _spy_learner() -> Learner:
    backbone = nn.Linear(4, 3)
    spy = _HandOffSpy()
    return Learner(backbone, spy, torch.optim.SGD(backbone.parameters(), lr=0.1), contextlib.nullcontext)


def _device_scalars(mix: Mixup) -> Mixup:
    """The Mixup a graph-replayed step sees: 0-dim tensors filled from the step's numbers."""
    return Mixup(
        torch.zeros(()).fill_(mix.weight),
        torch.zeros(()).fill_(mix.partner_weight),
        torch.zeros((), dtype=torch.bool).fill_(mix.own_dominant),
        mix.partner.clone(),
    )


@pytest.mark.parametrize("on_device", [False, True], ids=["python numbers", "device scalars (graph path)"])
@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_bookkeeping_gets_the_dominant_labels_and_their_loss_memo(lam: float, on_device: bool) -> None:
    learner = _spy_learner()
    images = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    partner = torch.tensor([1, 2, 3, 4, 5, 0])
    mix = Mixup.from_lambda(lam, partner)
    forward_backward(learner, images, labels, _device_scalars(mix) if on_device else mix)
    ((seen_labels, memo),) = learner.method.seen
    dominant = labels if lam >= 0.5 else labels[partner]
    assert torch.equal(seen_labels, dominant)
    assert torch.equal(memo[0], 100 + dominant) and torch.equal(memo[1], dominant.float())


def test_bookkeeping_without_mixup_gets_the_labels_and_the_memo() -> None:
    learner = _spy_learner()
    labels = torch.tensor([2, 1, 0])
    forward_backward(learner, torch.randn(3, 4), labels)
    ((seen_labels, memo),) = learner.method.seen
    assert torch.equal(seen_labels, labels) and torch.equal(memo[0], 100 + labels)


def test_step_function_is_the_eager_step_off_cuda(tmp_path, fmnist_dir) -> None:
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "balanced")
    cpu = torch.device("cpu")
    learner = build_learner(suite, data, "dnc", 4, 0, cpu, "fp32")
    for cuda_graphs in (True, False):
        step = step_function(learner, cpu, cuda_graphs)
        assert step.func is train_step and step.args == (learner,)  # graphs exist only on CUDA
    assert replays_graphs(torch.device("cuda"), True) and not replays_graphs(torch.device("cuda"), False)
    assert not replays_graphs(cpu, True)


# ---------------------------------------------------------------- the step never waits for the host


class _HostSyncRecorder(TorchDispatchMode):
    """Records operations that make the host wait for the device: reading a value back (.item(),
    comparisons to Python) or producing a data-dependent shape (nonzero, boolean indexing, ...)."""

    DYNAMIC_SHAPE = {"nonzero", "masked_select", "bincount", "_unique", "_unique2", "unique_dim", "unique_consecutive"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        boolean_index = name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
        )
        if torch.Tag.data_dependent_output in func.tags or name in self.DYNAMIC_SHAPE or boolean_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss_family", ["balanced", "long-tailed"])
def test_no_method_makes_the_training_step_wait_for_the_device(tmp_path, fmnist_dir, loss_family):
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family)
    mixup = suite.train.mixup_alpha > 0
    cpu = torch.device("cpu")
    recorder = _HostSyncRecorder()
    # The recorder is not blind: a sync it should see.
    with recorder:
        torch.ones(3).sum().item()
    assert recorder.seen == ["_local_scalar_dense"]
    for name in METHODS.names():
        learner = build_learner(suite, data, name, 16, 0, cpu, "fp32")
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(2):  # the second step runs with optimiser state and head caches in place
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.3, torch.randperm(images.shape[0])) if mixup else None
            recorder.seen = []
            with recorder:
                train_step(learner, images, labels, mix)
            assert recorder.seen == [], f"{name} ({loss_family}) synchronises in its step: {recorder.seen}"


# ---------------------------------------------------------------- state in place (CUDA graphs replay addresses)


def _state_addresses(learner) -> dict[str, int]:
    modules = {"backbone": learner.backbone, "method": learner.method}
    return {
        f"{prefix}.{key}": tensor.data_ptr()
        for prefix, module in modules.items()
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]
    }


@pytest.mark.parametrize("loss_family", ["balanced", "long-tailed"])
def test_every_method_updates_its_state_in_place(tmp_path, fmnist_dir, loss_family):
    # A CUDA graph replays the addresses it recorded: steps, the epoch's re-matching and a checkpoint
    # load must all write into the tensors the step was recorded with, never rebind them.
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family)
    cpu = torch.device("cpu")
    for name in METHODS.names():
        learner = build_learner(suite, data, name, 16, 0, cpu, "fp32")
        before = _state_addresses(learner)
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(3):
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.7, torch.randperm(images.shape[0])) if loss_family == "long-tailed" else None
            train_step(learner, images, labels, mix)
        learner.method.after_epoch()
        other = build_learner(suite, data, name, 16, 1, cpu, "fp32")  # another seed: other prototypes, assignment
        learner.method.load_state_dict(other.method.state_dict())
        learner.backbone.load_state_dict(other.backbone.state_dict())
        assert _state_addresses(learner) == before, f"{name} ({loss_family}) rebinds state"


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_mixup_as_device_scalars_trains_bit_for_bit_like_python_numbers(tmp_path, fmnist_dir, lam):
    # The graph-replayed step takes the mixup weights as 0-dim tensors; it must train exactly as the
    # eager step with Python numbers does, including which labels and memo the head's bookkeeping sees.
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "long-tailed")
    cpu = torch.device("cpu")
    images, labels = next(iter(cell_loaders(suite.train, data, cpu, 0)[0]))
    eager = Mixup.from_lambda(lam, torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1)))
    for name in METHODS.names():
        outputs, learners = [], []
        for mix in (eager, _device_scalars(eager)):
            torch.manual_seed(0)
            learner = build_learner(suite, data, name, 16, 0, cpu, "fp32")
            outputs.append(train_step(learner, images, labels, mix))
            learners.append(learner)
        (loss_a, correct_a), (loss_b, correct_b) = outputs
        assert torch.equal(loss_a, loss_b) and torch.equal(correct_a, correct_b), name
        for part in ("backbone", "method"):
            state_a, state_b = (getattr(learner, part).state_dict() for learner in learners)
            for key in state_a:
                assert torch.equal(state_a[key], state_b[key]), f"{name}: {part}.{key}"
