import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from protobench.data.prepare import prepare_cell_data
from protobench.engine import (
    Mixup,
    build_learner,
    cell_loaders,
    lr_factor,
    resolve_device,
    step_function,
    train_cell,
    train_step,
)
from protobench.errors import UserError
from protobench.methods import METHODS
from protobench.suites import TrainRecipe, load_suite
from tests.conftest import tiny_suite


def test_cosine_schedule_with_warmup():
    recipe = TrainRecipe(epochs=10, warmup_epochs=2, schedule="cosine")
    assert lr_factor(0, 10, recipe) == pytest.approx(1 / 20)
    assert lr_factor(19, 10, recipe) == pytest.approx(1.0)
    assert lr_factor(20, 10, recipe) == pytest.approx(1.0)
    assert lr_factor(60, 10, recipe) == pytest.approx(0.5)
    assert lr_factor(100, 10, recipe) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule():
    recipe = TrainRecipe(epochs=250, schedule="step", milestones=(100, 200), gamma=0.1)
    assert lr_factor(99 * 5, 5, recipe) == 1.0
    assert lr_factor(100 * 5, 5, recipe) == pytest.approx(0.1)
    assert lr_factor(200 * 5, 5, recipe) == pytest.approx(0.01)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="--device 'tpu' is not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda:0")


def run_tiny(tmp_path, fmnist_dir, **overrides):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", **overrides)))
    data = prepare_cell_data(suite, fmnist_dir, None)
    return data, train_cell(suite, data, "softmax", 4, 0, device=torch.device("cpu"))


def test_train_cell_records_everything(tmp_path, fmnist_dir):
    data, outcome = run_tiny(tmp_path, fmnist_dir, train={"epochs": 3, "batch_size": 32, "lr": 0.05})
    assert data.counts["train"] and sum(data.counts["train"]) == 160 and sum(data.counts["val"]) == 40
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3]
    for row in outcome.history:
        assert {
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "images_per_second",
            "lr",
        } <= set(row)
    m = outcome.metrics
    assert m["test_accuracy"] == outcome.history[-1]["test_accuracy"]
    best = max(outcome.history, key=lambda r: r["val_accuracy"])
    assert m["best_val_epoch"] == best["epoch"] and m["test_accuracy_at_best_val"] == best["test_accuracy"]
    assert len(outcome.per_class_accuracy) == 10 and m["train_images_per_second"] > 0
    # 160 images in batches of 32: the cosine schedule ends at zero.
    assert outcome.history[-1]["lr"] == pytest.approx(0.05 * lr_factor(14, 5, TrainRecipe(epochs=3)))
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]
    assert set(outcome.state) == {"backbone", "method", "optimizer"}


def test_same_seed_same_result(tmp_path, fmnist_dir):
    _, a = run_tiny(tmp_path, fmnist_dir)
    _, b = run_tiny(tmp_path, fmnist_dir)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert a.per_class_accuracy == b.per_class_accuracy


def test_mixup_and_adamw_step_schedule_run(tmp_path, fmnist_dir):
    train = {"epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "schedule": "step",
             "milestones": [1], "mixup_alpha": 1.0, "warmup_epochs": 1, "crop_padding": 2, "flip": True}  # fmt: skip
    _, outcome = run_tiny(tmp_path, fmnist_dir, train=train)
    assert all(math.isfinite(r["train_loss"]) for r in outcome.history)
    assert outcome.history[-1]["lr"] == pytest.approx(1e-4)


def _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family):
    """A one-epoch tiny suite of ``loss_family`` (long-tailed: with mixup) and its data."""
    mixup = {"mixup_alpha": 1.0} if loss_family == "long-tailed" else {}
    train = {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, **mixup}
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", loss=loss_family, train=train)))
    return suite, prepare_cell_data(suite, fmnist_dir, None)


def test_step_function_is_the_eager_step_off_cuda(tmp_path, fmnist_dir):
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "balanced")
    cpu = torch.device("cpu")
    images, labels = next(iter(cell_loaders(suite.train, data, cpu, 0)[0]))
    results = []
    for cuda_graphs in (True, False):
        torch.manual_seed(0)
        learner = build_learner(suite, data, "dnc", 4, 0, cpu)
        step = step_function(learner, cpu, cuda_graphs)
        assert step.func is train_step  # graphs exist only on CUDA
        results.append([t.item() for t in step(images, labels, None)])
    assert results[0] == results[1]


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
        learner = build_learner(suite, data, name, 16, 0, cpu)
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(2):  # the second step runs with optimiser state and head caches in place
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.3, torch.randperm(images.shape[0])) if mixup else None
            recorder.seen = []
            with recorder:
                train_step(learner, images, labels, mix)
            assert recorder.seen == [], f"{name} ({loss_family}) synchronises in its step: {recorder.seen}"


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
        learner = build_learner(suite, data, name, 16, 0, cpu)
        before = _state_addresses(learner)
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(3):
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.7, torch.randperm(images.shape[0])) if loss_family == "long-tailed" else None
            train_step(learner, images, labels, mix)
        learner.method.after_epoch()
        other = build_learner(suite, data, name, 16, 1, cpu)  # another seed: other prototypes and assignment
        learner.method.load_state_dict(other.method.state_dict())
        learner.backbone.load_state_dict(other.backbone.state_dict())
        assert _state_addresses(learner) == before, f"{name} ({loss_family}) rebinds state"


def _as_device_scalars(mix: Mixup) -> Mixup:
    """The Mixup a graph-replayed step sees: 0-dim tensors filled from the step's numbers."""
    scalar = torch.zeros(())
    return Mixup(
        scalar.clone().fill_(mix.weight),
        scalar.clone().fill_(mix.partner_weight),
        torch.zeros((), dtype=torch.bool).fill_(mix.own_dominant),
        mix.partner.clone(),
    )


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_mixup_as_device_scalars_trains_bit_for_bit_like_python_numbers(tmp_path, fmnist_dir, lam):
    # The graph-replayed step takes the mixup weights as 0-dim tensors; it must train exactly as the
    # eager step with Python numbers does, including which labels the head's bookkeeping sees.
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "long-tailed")
    cpu = torch.device("cpu")
    images, labels = next(iter(cell_loaders(suite.train, data, cpu, 0)[0]))
    eager = Mixup.from_lambda(lam, torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1)))
    for name in METHODS.names():
        outputs, learners = [], []
        for mix in (eager, _as_device_scalars(eager)):
            torch.manual_seed(0)
            learner = build_learner(suite, data, name, 16, 0, cpu)
            outputs.append(train_step(learner, images, labels, mix))
            learners.append(learner)
        (loss_a, correct_a), (loss_b, correct_b) = outputs
        assert torch.equal(loss_a, loss_b) and torch.equal(correct_a, correct_b), name
        for part in ("backbone", "method"):
            state_a, state_b = (getattr(learner, part).state_dict() for learner in learners)
            for key in state_a:
                assert torch.equal(state_a[key], state_b[key]), f"{name}: {part}.{key}"
