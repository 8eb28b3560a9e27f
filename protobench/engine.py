"""The one training engine: device, precision and seeding, and a loop that knows no method by name.

A cell (suite x method x dim x seed x ratio) is trained by ``train_cell``: build the backbone and the
method head, then per epoch one pass of SGD/AdamW over the training loader and an evaluation of the
validation and test splits. Metrics are accumulated on the device and read once per epoch, so the
step itself never waits for the host.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from protobench.backbones import create_backbone
from protobench.data.base import Augment, BatchLoader
from protobench.data.prepare import CellData
from protobench.errors import UserError
from protobench.methods import Method, create_method
from protobench.suites import Suite, TrainRecipe

# ---------------------------------------------------------------- device, precision, seeding


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:i``; anything else is a UserError."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: no CUDA device is available here; use --device cpu or auto")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0..")
        return device
    raise UserError(f"--device '{spec}' is not a device; use auto, cpu, cuda or cuda:N")


def device_name(device: torch.device) -> str:
    """A readable name of the device (the GPU model, or the CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` means bf16 autocast on CUDA and fp32 on CPU (CPU bf16 is slower than fp32 here)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def replays_graphs(device: torch.device, cuda_graphs: bool) -> bool:
    """Whether training steps are replayed from CUDA graphs: asked for, and on CUDA (elsewhere eager)."""
    return cuda_graphs and device.type == "cuda"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


# ---------------------------------------------------------------- optimiser and schedule


def build_optimizer(params: list[nn.Parameter], recipe: TrainRecipe) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW with the recipe's learning rate and weight decay.

    Multi-tensor (``foreach``) updates on every device, as torch picks on CUDA by default: one
    operation per update term for all parameters instead of one per parameter.
    """
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov and recipe.momentum > 0,
            weight_decay=recipe.weight_decay,
            foreach=True,
        )
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True)


def lr_factor(step: int, steps_per_epoch: int, recipe: TrainRecipe) -> float:
    """The learning-rate multiplier at optimiser step ``step``: a pure function of the step.

    Linear warm-up over ``warmup_epochs``, then ``cosine`` decay to zero, ``step`` decay by ``gamma``
    at each milestone epoch, or ``constant``.
    """
    epoch = step / steps_per_epoch
    if recipe.warmup_epochs and epoch < recipe.warmup_epochs:
        return (step + 1) / (recipe.warmup_epochs * steps_per_epoch)
    if recipe.schedule == "cosine":
        total = recipe.epochs * steps_per_epoch
        start = recipe.warmup_epochs * steps_per_epoch
        progress = (step - start) / max(1, total - start)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if recipe.schedule == "step":
        passed = sum(1 for m in recipe.milestones if step // steps_per_epoch >= m)
        return recipe.gamma**passed
    return 1.0


# ---------------------------------------------------------------- progress


class Progress(Protocol):
    """Where the engine reports progress; the CLI shows it with rich or as plain log lines."""

    def start_cell_epochs(self, epochs: int, batches: int) -> None: ...

    def batch(self, epoch: int, index: int) -> None: ...

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None: ...


class SilentProgress:
    """Reports nothing (tests, benchmarks)."""

    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        pass

    def batch(self, epoch: int, index: int) -> None:
        pass

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        pass


# ---------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Accuracy of one split, overall and per class (in %)."""

    accuracy: float
    per_class: list[float]


@torch.no_grad()
def evaluate(
    backbone: nn.Module, method: Method, loader: BatchLoader, num_classes: int, autocast: Callable[[], Any]
) -> Evaluation:
    """Top-1 accuracy of ``method.predict`` over ``loader``, overall and per class."""
    backbone.eval()
    method.eval()
    device = next(backbone.parameters()).device
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    for images, labels in loader:
        with autocast():
            z = backbone(images)
        predictions = method.predict(method(z.float()))
        total += torch.bincount(labels, minlength=num_classes)
        correct += torch.bincount(labels[predictions == labels], minlength=num_classes)
    per_class = (100 * correct / total.clamp(min=1)).tolist()
    return Evaluation(float(100 * correct.sum() / total.sum().clamp(min=1)), per_class)


# ---------------------------------------------------------------- one cell


@dataclass
class CellOutcome:
    """What training one cell produced (the results store adds identity and provenance)."""

    metrics: dict[str, float | int | None]
    per_class_accuracy: list[float]
    history: list[dict[str, float]]
    method_hyperparameters: dict[str, Any]
    timings: dict[str, float]
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Learner:
    """What one cell trains: backbone, method head and optimiser on one device, and its autocast."""

    backbone: nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    autocast: Callable[[], Any]


def build_learner(suite: Suite, data: CellData, method_name: str, dim: int, seed: int, device: torch.device) -> Learner:
    """Backbone, head and optimiser for ``method_name`` at ``dim``/``seed``, on ``device`` (seeds nothing)."""
    precision = resolve_precision(suite.train.precision, device)
    channels_last = device.type == "cuda"

    def autocast() -> Any:
        # No weight-cast cache: each weight is cast once per step anyway, and a CUDA graph must not keep one.
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)

    backbone = create_backbone(suite.backbone, in_channels=data.in_channels, dim=dim, **suite.backbone_options)
    backbone = backbone.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    method = create_method(
        method_name,
        data.num_classes,
        dim,
        seed=seed,
        loss_family=suite.loss,
        **suite.method_options.get(method_name, {}),
    ).to(device)
    params = [p for p in (*backbone.parameters(), *method.parameters()) if p.requires_grad]
    return Learner(backbone, method, build_optimizer(params, suite.train), autocast)


def cell_loaders(
    recipe: TrainRecipe, data: CellData, device: torch.device, seed: int
) -> tuple[BatchLoader, BatchLoader | None, BatchLoader]:
    """Train (augmented, shuffled per seed and epoch), validation (None when no split) and test loaders."""
    augment = Augment(recipe.crop_padding, recipe.flip, recipe.random_resized_crop, dict(recipe.augment_extra))
    return data.loaders(
        batch_size=recipe.batch_size,
        eval_batch_size=recipe.eval_batch_size,
        device=device,
        seed=seed,
        augment=augment,
        channels_last=device.type == "cuda",
    )


@dataclass(frozen=True)
class Mixup:
    """One step's mixup: the batch blended with its permutation ``partner``, ``weight`` x own +
    ``partner_weight`` x partner, losses weighted alike; ``own_dominant`` says whether the own
    labels carry the larger weight (the head's bookkeeping sees the dominant labels).

    Python numbers on the eager path; 0-dim device tensors filled per step when the step is
    replayed from a CUDA graph, filled from the same numbers so both paths compute bit for bit alike.
    """

    weight: float | torch.Tensor
    partner_weight: float | torch.Tensor
    own_dominant: bool | torch.Tensor
    partner: torch.Tensor

    @classmethod
    def from_lambda(cls, lam: float, partner: torch.Tensor) -> Mixup:
        """Mixup with own weight ``lam`` (drawn from Beta(alpha, alpha)) and partner permutation ``partner``."""
        return cls(lam, 1.0 - lam, lam >= 0.5, partner)

    @classmethod
    def draw(cls, rng: np.random.Generator, alpha: float, batch: int, device: torch.device) -> Mixup | None:
        """The next step's mixup: lambda from Beta(alpha, alpha) on the host (no device round trip), a
        random permutation on the device; None when ``alpha`` is 0 (no mixup)."""
        if alpha <= 0:
            return None
        lam = float(rng.beta(alpha, alpha))
        return cls.from_lambda(lam, torch.randperm(batch, device=device))


def forward_backward(
    learner: Learner, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step up to (not including) the optimiser update: forward, loss, fresh gradients
    and the head's bookkeeping. Returns the loss and the number of correct predictions (device scalars).
    With ``mix`` it trains on the mixup of the batch with its permutation.
    """
    backbone, method = learner.backbone, learner.method
    if mix is not None:
        images = torch.lerp(images[mix.partner], images, mix.weight)
    with learner.autocast():
        z = backbone(images)
    h = method(z.float())
    if mix is None:
        loss = method.loss(h, labels)
        step_labels = labels
    else:
        partner_labels = labels[mix.partner]
        loss = mix.weight * method.loss(h, labels) + mix.partner_weight * method.loss(h, partner_labels)
        if isinstance(mix.own_dominant, torch.Tensor):
            step_labels = torch.where(mix.own_dominant, labels, partner_labels)
        else:
            step_labels = labels if mix.own_dominant else partner_labels
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        # The bookkeeping reads the detached features and the head's buffers, never a parameter
        # the optimiser is about to change, so it may run before the update.
        h = h.detach()
        method.after_step(h, step_labels)
        correct = (method.predict(h) == step_labels).sum()
    return loss.detach(), correct


def train_step(
    learner: Learner, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch; returns the loss and the number of correct predictions (device scalars)."""
    loss, correct = forward_backward(learner, images, labels, mix)
    learner.optimizer.step()
    return loss, correct


#: A training step bound to its learner: (images, labels, mixup or None) -> (loss, correct), device scalars.
TrainStep = Callable[[torch.Tensor, torch.Tensor, "Mixup | None"], tuple[torch.Tensor, torch.Tensor]]


class GraphedTrainStep:
    """``train_step`` with its forward, backward and head bookkeeping replayed from a CUDA graph.

    A small model leaves the GPU waiting while Python launches its kernels one by one; a graph
    launches the whole recorded step at once. The first ``warmup`` calls run eagerly on a side
    stream (cuDNN autotuning, optimiser state), the next one records the step on static input
    buffers; later calls copy the batch into those buffers and replay. The optimiser update runs
    eagerly after the replay, so the per-step learning rate stays a plain float. Replays reuse the
    recorded addresses: every method updates its state in place (tests/test_engine.py checks it).
    A batch of another shape (a training split smaller than one batch) runs eagerly.
    """

    def __init__(self, learner: Learner, warmup: int = 3) -> None:
        self.learner = learner
        self.warmup = warmup
        self.calls = 0
        self.params = [p for group in learner.optimizer.param_groups for p in group["params"]]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side_stream = torch.cuda.Stream()

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; the returned tensors are overwritten by the next call."""
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            return self._on_side_stream(images, labels, mix)
        if self.graph is None:
            self._capture(images, labels, mix)
        elif images.shape != self.images.shape or (mix is None) != (self.mix is None):
            self.grads_in_place = False  # the eager step gives the parameters new gradient tensors
            return train_step(self.learner, images, labels, mix)
        self.images.copy_(images)
        self.labels.copy_(labels)
        if mix is not None and self.mix is not None:
            self.mix.weight.fill_(mix.weight)  # type: ignore[union-attr]
            self.mix.partner_weight.fill_(mix.partner_weight)  # type: ignore[union-attr]
            self.mix.own_dominant.fill_(mix.own_dominant)  # type: ignore[union-attr]
            self.mix.partner.copy_(mix.partner)
        self.graph.replay()
        if not self.grads_in_place:
            for param, grad in zip(self.params, self.grads, strict=True):
                param.grad = grad
            self.grads_in_place = True
        self.learner.optimizer.step()
        return self.loss, self.correct

    def _on_side_stream(
        self, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream):
            outputs = train_step(self.learner, images, labels, mix)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        return outputs

    def _capture(self, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None) -> None:
        """Record forward_backward on static buffers (recording runs nothing; the caller replays)."""
        self.images = torch.empty_like(images)
        self.labels = torch.empty_like(labels)
        self.mix = None
        if mix is not None:
            scalar = functools.partial(torch.zeros, (), device=images.device)
            self.mix = Mixup(scalar(), scalar(), scalar(dtype=torch.bool), torch.empty_like(mix.partner))
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.correct = forward_backward(self.learner, self.images, self.labels, self.mix)
        # The recorded backward writes these gradient tensors; the eager update reads them.
        self.grads = [p.grad for p in self.params]
        self.grads_in_place = True


def step_function(learner: Learner, device: torch.device, cuda_graphs: bool) -> TrainStep:
    """The learner's training step: replayed from a CUDA graph where ``replays_graphs`` says so, else eager."""
    if replays_graphs(device, cuda_graphs):
        return GraphedTrainStep(learner)
    return functools.partial(train_step, learner)


def train_cell(
    suite: Suite,
    data: CellData,
    method_name: str,
    dim: int,
    seed: int,
    *,
    device: torch.device,
    deterministic: bool = False,
    cuda_graphs: bool = True,
    progress: Progress | None = None,
) -> CellOutcome:
    """Train one method at one dim and seed on ``data`` and evaluate it every epoch.

    On CUDA, ``cuda_graphs`` replays each training step from a CUDA graph (``GraphedTrainStep``);
    elsewhere, or when it is off, the step runs eagerly.
    """
    progress = progress or SilentProgress()
    recipe = suite.train
    seed_everything(seed, deterministic)
    learner = build_learner(suite, data, method_name, dim, seed, device)
    backbone, method, optimizer = learner.backbone, learner.method, learner.optimizer
    train_loader, val_loader, test_loader = cell_loaders(recipe, data, device, seed)
    step_fn = step_function(learner, device, cuda_graphs)
    steps_per_epoch = len(train_loader)
    mixup = np.random.default_rng(seed)  # draws each step's mixup lambda (Mixup.draw)
    history: list[dict[str, float]] = []
    best_val, test_at_best_val, best_epoch = -1.0, None, None
    train_seconds, train_images = 0.0, 0
    progress.start_cell_epochs(recipe.epochs, steps_per_epoch)
    start = time.perf_counter()
    step = 0
    for epoch in range(recipe.epochs):
        backbone.train()
        method.train()
        train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        synchronize(device)
        epoch_start = time.perf_counter()
        for index, (images, labels) in enumerate(train_loader):
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * lr_factor(step, steps_per_epoch, recipe)
            mix = Mixup.draw(mixup, recipe.mixup_alpha, images.shape[0], device)
            loss, step_correct = step_fn(images, labels, mix)
            loss_sum += loss * labels.shape[0]
            correct += step_correct
            seen += labels.shape[0]
            step += 1
            progress.batch(epoch, index)
        synchronize(device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        train_images += seen
        diagnostics = method.after_epoch()
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / max(1, seen),
            "train_accuracy": 100 * float(correct) / max(1, seen),
            "images_per_second": seen / epoch_seconds,
            **{k: float(v) for k, v in diagnostics.items()},
        }
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"training loss became {row['train_loss']} in epoch {epoch + 1}")
        if val_loader is not None:
            row["val_accuracy"] = evaluate(backbone, method, val_loader, data.num_classes, learner.autocast).accuracy
        test = evaluate(backbone, method, test_loader, data.num_classes, learner.autocast)
        row["test_accuracy"] = test.accuracy
        if val_loader is not None and row["val_accuracy"] > best_val:
            best_val, test_at_best_val, best_epoch = row["val_accuracy"], test.accuracy, epoch + 1
        history.append(row)
        progress.end_epoch(epoch, row)
    wall = time.perf_counter() - start
    metrics: dict[str, float | int | None] = {
        "test_accuracy": history[-1]["test_accuracy"],
        "val_accuracy": history[-1].get("val_accuracy"),
        "test_accuracy_at_best_val": test_at_best_val,
        "best_val_accuracy": best_val if val_loader is not None else None,
        "best_val_epoch": best_epoch,
        "train_accuracy": history[-1]["train_accuracy"],
        "train_loss": history[-1]["train_loss"],
        "train_images_per_second": train_images / train_seconds,
    }
    return CellOutcome(
        metrics=metrics,
        per_class_accuracy=test.per_class,
        history=history,
        method_hyperparameters=method.hyperparameters(),
        timings={"wall_seconds": wall, "train_seconds": train_seconds},
        state={
            "backbone": backbone.state_dict(),
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
        },
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (timing only; never inside the step)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
