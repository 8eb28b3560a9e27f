"""The one training engine: a loop that knows no method by name (docs/engine.md).

A cell (suite x method x dim x seed x ratio) is trained by ``train_cell``: build the backbone and the
method head, then per epoch one pass of SGD/AdamW over the training loader and an evaluation of the
validation and test splits. Metrics are accumulated on the device and read once per epoch, so the
step itself (protobench/step.py) never waits for the host. Device and precision come resolved
(protobench/device.py); progress goes to a ``Progress`` (protobench/progress.py).
"""

from __future__ import annotations

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
from protobench.device import seed_everything, synchronize
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
) -> CellOutcome:
    """Train one method at one dim and seed on ``data`` and evaluate it every epoch.

    ``precision`` is resolved already (``fp32`` or ``bf16``; protobench.device.resolve_precision).

    On CUDA, ``cuda_graphs`` replays each training step from a CUDA graph (``GraphedTrainStep``);
    elsewhere, or when it is off, the step runs eagerly.
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
    features = feature_report(backbone, method, test_loader, data.num_classes, learner.autocast)
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
        diagnostics=features.values,
        embeddings=features.embeddings,
        state={
            "backbone": backbone.state_dict(),
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
        },
    )
