"""The one training engine: a loop that knows no method by name (docs/engine.md).

A cell (suite x method x dim x seed x ratio) is trained by ``train_cell``: build the backbone and the
method head, then per epoch one pass of SGD/AdamW over the training loader and an evaluation of the
validation and test splits. Metrics are accumulated on the device and read once per epoch, so the
step itself (protobench/step.py) never waits for the host. Device and precision come resolved
(protobench/device.py); progress goes to a ``Progress`` (protobench/progress.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from protobench.backbones import create_backbone
from protobench.data.base import Augment, BatchLoader
from protobench.data.prepare import CellData
from protobench.device import restore_rng, rng_state, seed_everything, synchronize
from protobench.diagnostics import feature_report
from protobench.methods import Method, create_method
from protobench.progress import Progress, SilentProgress
from protobench.step import Learner, Mixup, step_function
from protobench.suites import Suite, TrainRecipe

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
    #: Measured once on the test set after the last epoch (protobench.diagnostics.feature_report).
    diagnostics: dict[str, float | None] = field(default_factory=dict)
    #: At d <= 3, a sample of test features, their labels and the class anchors (arrays), for plots.
    embeddings: dict[str, Any] | None = None


def build_learner(
    suite: Suite, data: CellData, method_name: str, dim: int, seed: int, device: torch.device, precision: str
) -> Learner:
    """Backbone, head and optimiser for ``method_name`` at ``dim``/``seed`` on ``device``, with
    ``precision`` (``fp32`` or ``bf16`` autocast, already resolved); seeds nothing."""
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
    return Learner(backbone, method, build_optimizer(params, suite.recipe_for(method_name)), autocast)


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


@dataclass
class Checkpointing:
    """How ``train_cell`` saves its training state as it goes and whether it continues an earlier one.

    ``save`` receives the whole state (``training_state``) at the end of every epoch and, inside an
    epoch, once ``every_seconds`` have passed since the last save; ``resume`` is a state saved so to
    continue from; ``should_stop`` is asked after every step, and when it says yes the state is saved
    and ``Interrupted`` raised (pre-emption; docs/long-runs.md).
    """

    save: Callable[[dict[str, Any]], None]
    every_seconds: float = 600.0
    resume: dict[str, Any] | None = None
    should_stop: Callable[[], bool] = lambda: False


class Interrupted(Exception):
    """Training stopped on request after saving its state; the same command resumes it."""


class TrainingFailed(Exception):
    """Training raised in ``epoch`` (1-based); ``cause`` is the original error."""

    def __init__(self, epoch: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.epoch = epoch
        self.cause = cause


@dataclass
class LoopState:
    """Where a cell's training loop is and what it has measured so far: everything of a checkpoint
    besides the learner's own state and the random number generators."""

    epoch: int = 0  # the epoch being trained (0-based); after an epoch ends, the next one
    batch: int = 0  # batches of ``epoch`` already trained
    step: int = 0  # optimiser steps so far
    loss_sum: torch.Tensor | None = None  # this epoch's summed training loss and correct count
    correct: torch.Tensor | None = None
    seen: int = 0  # this epoch's training images so far
    epoch_seconds: float = 0.0  # this epoch's training time so far
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = -1.0
    test_at_best_val: float | None = None
    best_epoch: int | None = None
    train_seconds: float = 0.0  # finished epochs only
    train_images: int = 0
    wall_seconds: float = 0.0  # up to the last save
    test_per_class: list[float] = field(default_factory=list)  # the last finished epoch's

    def start_epoch(self, device: torch.device) -> None:
        """Zero this epoch's sums (unless resuming inside it)."""
        if self.batch == 0 or self.loss_sum is None or self.correct is None:
            self.loss_sum = torch.zeros((), device=device)
            self.correct = torch.zeros((), device=device)
            self.seen, self.epoch_seconds = 0, 0.0


def training_state(learner: Learner, loop: LoopState, mixup: np.random.Generator) -> dict[str, Any]:
    """A cell's whole training state: backbone, head (prototypes, assignment, representatives,
    centroids), optimiser, loop position and measurements, and every random number generator."""
    return {
        "backbone": learner.backbone.state_dict(),
        "method": learner.method.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "loop": dataclasses.asdict(loop),
        "rng": rng_state(),
        "mixup_rng": mixup.bit_generator.state,
    }


def restore_training_state(
    state: dict[str, Any], learner: Learner, mixup: np.random.Generator, device: torch.device
) -> LoopState:
    """Load ``training_state``'s output into a freshly built learner and generators; returns the loop."""
    learner.backbone.load_state_dict(state["backbone"])
    learner.method.load_state_dict(state["method"])
    learner.optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"])
    mixup.bit_generator.state = state["mixup_rng"]
    loop = LoopState(**state["loop"])
    for name in ("loss_sum", "correct"):
        if (value := getattr(loop, name)) is not None:
            setattr(loop, name, value.to(device))
    return loop


def train_cell(
    suite: Suite,
    data: CellData,
    method_name: str,
    dim: int,
    seed: int,
    *,
    device: torch.device,
    precision: str,
    deterministic: bool = False,
    cuda_graphs: bool = True,
    progress: Progress | None = None,
    checkpointing: Checkpointing | None = None,
) -> CellOutcome:
    """Train one method at one dim and seed on ``data`` and evaluate it every epoch.

    ``precision`` is resolved already (``fp32`` or ``bf16``; protobench.device.resolve_precision).
    On CUDA, ``cuda_graphs`` replays each training step from a CUDA graph (``GraphedTrainStep``);
    elsewhere, or when it is off, the step runs eagerly. With ``checkpointing`` the state is saved as
    training goes and, given one, a saved state is continued: the batches, random draws and updates
    that follow are those an uninterrupted run makes. An error while training is raised as
    ``TrainingFailed`` with its epoch.
    """
    progress = progress or SilentProgress()
    recipe = suite.recipe_for(method_name)
    seed_everything(seed, deterministic)
    learner = build_learner(suite, data, method_name, dim, seed, device, precision)
    backbone, method, optimizer = learner.backbone, learner.method, learner.optimizer
    train_loader, val_loader, test_loader = cell_loaders(recipe, data, device, seed)
    step_fn = step_function(learner, device, cuda_graphs)
    steps_per_epoch = len(train_loader)
    mixup = np.random.default_rng(seed)  # draws each step's mixup lambda (Mixup.draw)
    loop = LoopState()
    if checkpointing is not None and checkpointing.resume is not None:
        loop = restore_training_state(checkpointing.resume, learner, mixup, device)
    progress.start_cell_epochs(recipe.epochs, steps_per_epoch)
    start, wall_before = time.perf_counter(), loop.wall_seconds
    last_save = time.monotonic()

    def save() -> None:
        nonlocal last_save
        if checkpointing is not None:
            loop.wall_seconds = wall_before + time.perf_counter() - start
            if loop.loss_sum is not None and not math.isfinite(float(loop.loss_sum)):
                raise FloatingPointError(f"training loss became {float(loop.loss_sum)} in epoch {loop.epoch + 1}")
            checkpointing.save(training_state(learner, loop, mixup))
            last_save = time.monotonic()

    try:
        while loop.epoch < recipe.epochs:
            epoch = loop.epoch
            backbone.train()
            method.train()
            train_loader.set_epoch(epoch, skip_batches=loop.batch)
            loop.start_epoch(device)
            synchronize(device)
            resumed_seconds, epoch_start = loop.epoch_seconds, time.perf_counter()
            for index, (images, labels) in enumerate(train_loader, start=loop.batch):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr * lr_factor(loop.step, steps_per_epoch, recipe)
                mix = Mixup.draw(mixup, recipe.mixup_alpha, images.shape[0], device)
                loss, step_correct = step_fn(images, labels, mix)
                loop.loss_sum += loss * labels.shape[0]
                loop.correct += step_correct
                loop.seen += labels.shape[0]
                loop.step += 1
                loop.batch = index + 1
                progress.batch(epoch, index)
                if checkpointing is not None:
                    stop = checkpointing.should_stop()
                    if stop or time.monotonic() - last_save >= checkpointing.every_seconds:
                        synchronize(device)
                        loop.epoch_seconds = resumed_seconds + time.perf_counter() - epoch_start
                        save()
                        if stop:
                            raise Interrupted(f"stopped in epoch {epoch + 1} after batch {index + 1}")
            synchronize(device)
            epoch_seconds = resumed_seconds + time.perf_counter() - epoch_start
            loop.train_seconds += epoch_seconds
            loop.train_images += loop.seen
            diagnostics = method.after_epoch()
            row: dict[str, float] = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(loop.loss_sum) / max(1, loop.seen),
                "train_accuracy": 100 * float(loop.correct) / max(1, loop.seen),
                "images_per_second": loop.seen / epoch_seconds,
                **{k: float(v) for k, v in diagnostics.items()},
            }
            if not math.isfinite(row["train_loss"]):
                raise FloatingPointError(f"training loss became {row['train_loss']} in epoch {epoch + 1}")
            if val_loader is not None:
                row["val_accuracy"] = evaluate(
                    backbone, method, val_loader, data.num_classes, learner.autocast
                ).accuracy
            test = evaluate(backbone, method, test_loader, data.num_classes, learner.autocast)
            row["test_accuracy"] = test.accuracy
            if val_loader is not None and row["val_accuracy"] > loop.best_val:
                loop.best_val, loop.test_at_best_val, loop.best_epoch = row["val_accuracy"], test.accuracy, epoch + 1
            loop.history.append(row)
            loop.test_per_class = test.per_class
            loop.epoch, loop.batch, loop.loss_sum, loop.correct = epoch + 1, 0, None, None
            progress.end_epoch(epoch, row)
            save()
            if checkpointing is not None and checkpointing.should_stop() and loop.epoch < recipe.epochs:
                raise Interrupted(f"stopped after epoch {epoch + 1}")
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as error:
        raise TrainingFailed(loop.epoch + 1, error) from error
    wall = wall_before + time.perf_counter() - start
    features = feature_report(backbone, method, test_loader, data.num_classes, learner.autocast)
    history = loop.history
    metrics: dict[str, float | int | None] = {
        "test_accuracy": history[-1]["test_accuracy"],
        "val_accuracy": history[-1].get("val_accuracy"),
        "test_accuracy_at_best_val": loop.test_at_best_val,
        "best_val_accuracy": loop.best_val if val_loader is not None else None,
        "best_val_epoch": loop.best_epoch,
        "train_accuracy": history[-1]["train_accuracy"],
        "train_loss": history[-1]["train_loss"],
        "train_images_per_second": loop.train_images / loop.train_seconds,
    }
    return CellOutcome(
        metrics=metrics,
        per_class_accuracy=loop.test_per_class,
        history=history,
        method_hyperparameters=method.hyperparameters(),
        timings={"wall_seconds": wall, "train_seconds": loop.train_seconds},
        diagnostics=features.values,
        embeddings=features.embeddings,
        state={
            "backbone": backbone.state_dict(),
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
        },
    )
