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
from protobench.cell_state import (
    Checkpointing,
    Interrupted,
    LoopState,
    TrainingFailed,
    restore_training_state,
    training_state,
)
from protobench.data.base import Augment, BatchLoader
from protobench.data.prepare import CellData
from protobench.device import at_least_fp32, seed_everything, synchronize
from protobench.diagnostics import feature_report
from protobench.distributed import SINGLE_PROCESS, Collective
from protobench.methods import Method, create_method
from protobench.progress import Progress, SilentProgress
from protobench.recipe import TrainRecipe
from protobench.spec import CellSpec
from protobench.step import Learner, Mixup, step_function

#: The numerics version of the training step and loop (this module, protobench/step.py and the
#: optimiser set-up): bump it with any change that moves a cell's numbers (docs/engine.md, "Numerics
#: versions"), and re-make the fingerprint in the same commit.
NUMERICS_VERSION = 1

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
    backbone: nn.Module,
    method: Method,
    loader: BatchLoader,
    num_classes: int,
    autocast: Callable[[], Any],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    where: str = "split test",
) -> Evaluation:
    """Top-1 accuracy of ``method.predict`` over ``loader``, overall and per class; ``reduce`` sums the
    counts over data-parallel ranks, each of which evaluated its part of the split (``Collective.sum_``).
    Scores that are NaN or infinite raise ``FloatingPointError`` naming the head and ``where``: their
    argmax is an arbitrary class, which would record a chance-level accuracy as if it were one."""
    backbone.eval()
    method.eval()
    device, dtype = next(backbone.parameters()).device, next(backbone.parameters()).dtype
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    bad = torch.zeros(2, device=device)  # NaN scores, infinite scores: counted on the device, read once
    for images, labels in loader:
        with autocast():
            z = backbone(images.to(dtype))  # a no-op but for an fp64 learner
        h = method(at_least_fp32(z))
        predictions = method.predict(h)
        scores = method.scores(h)  # predict may skip them (a shortcut to the same argmax): check them here
        bad[0] += torch.isnan(scores).sum()
        bad[1] += torch.isinf(scores).sum()
        total += torch.bincount(labels, minlength=num_classes)
        correct += torch.bincount(labels[predictions == labels], minlength=num_classes)
    if reduce is not None:
        reduce(correct)
        reduce(total)
        reduce(bad)
    nan, inf = bad.tolist()
    if nan or inf:
        name = method.method_name or type(method).__name__
        raise FloatingPointError(f"{name} scores are {'NaN' if nan else 'infinite'} at evaluation ({where})")
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


def build_learner(spec: CellSpec, data: CellData, device: torch.device) -> Learner:
    """Backbone, head and optimiser of the cell ``spec`` on ``device``, in its precision (``bf16``
    autocast, ``fp32``, or ``fp64``: every parameter and buffer in float64); seeds nothing."""
    channels_last = device.type == "cuda"
    precision = spec.precision

    def autocast() -> Any:
        # No weight-cast cache: each weight is cast once per step anyway, and a CUDA graph must not keep one.
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)

    backbone = create_backbone(spec.backbone, in_channels=data.in_channels, dim=spec.dim, **spec.backbone_options)
    backbone = backbone.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    method = create_method(
        spec.method, data.num_classes, spec.dim, seed=spec.seed, loss_family=spec.loss, **spec.method_options
    ).to(device)
    if precision == "fp64":
        backbone, method = backbone.to(torch.float64), method.to(torch.float64)
    params = [p for p in (*backbone.parameters(), *method.parameters()) if p.requires_grad]
    return Learner(backbone, method, build_optimizer(params, spec.train), autocast)


def cell_loaders(
    recipe: TrainRecipe, data: CellData, device: torch.device, seed: int, collective: Collective = SINGLE_PROCESS
) -> tuple[BatchLoader, BatchLoader | None, BatchLoader]:
    """Train (augmented, shuffled per seed and epoch), validation (None when no split) and test loaders;
    under torchrun each yields this rank's rows of every global batch (``collective.part``)."""
    augment = Augment(recipe.crop_padding, recipe.flip, recipe.random_resized_crop, dict(recipe.augment_extra))
    return data.loaders(
        batch_size=recipe.batch_size,
        eval_batch_size=recipe.eval_batch_size,
        device=device,
        seed=seed,
        augment=augment,
        channels_last=device.type == "cuda",
        part=collective.part,
    )


def train_cell(
    spec: CellSpec,
    data: CellData,
    *,
    device: torch.device,
    cuda_graphs: bool = True,
    progress: Progress | None = None,
    checkpointing: Checkpointing | None = None,
    collective: Collective = SINGLE_PROCESS,
) -> CellOutcome:
    """Train the cell ``spec`` on ``data`` (prepared for its dataset and imbalance ratio) and evaluate
    it every epoch. The spec is all the engine reads of the cell: method, options, recipe, precision
    (resolved: ``fp32``, ``bf16`` or ``fp64``) and whether kernels are deterministic.

    On CUDA, ``cuda_graphs`` replays each training step from a CUDA graph (``GraphedTrainStep``);
    elsewhere, or when it is off, the step runs eagerly. With ``checkpointing`` the state is saved as
    training goes and, given one, a saved state is continued: the batches, random draws and updates
    that follow are those an uninterrupted run makes. An error while training is raised as
    ``TrainingFailed`` with its epoch. Under torchrun (``collective`` a ``DataParallel``) every rank
    calls this together and trains on its slice of each batch (docs/distributed.md); the outcome's
    figures are the whole batch's and test set's on every rank, its diagnostics rank 0's.
    """
    progress = progress or SilentProgress()
    recipe = spec.train
    seed_everything(spec.seed, spec.deterministic)
    learner = build_learner(spec, data, device)
    backbone, method, optimizer = learner.backbone, learner.method, learner.optimizer
    train_loader, val_loader, test_loader = cell_loaders(recipe, data, device, spec.seed, collective)
    step_learner = collective.for_training(learner, device, spec.sync_batchnorm)
    # The diagnostics see the whole test set (under torchrun each rank's loader holds a slice of it).
    full_test = collective.unsliced(test_loader, lambda: cell_loaders(recipe, data, device, spec.seed)[2])
    loss_scale = collective.loss_scale(method.loss_reduction)
    step_fn = step_function(step_learner, device, cuda_graphs and collective.graphs_allowed)
    if spec.precision == "fp64":  # the loader gives float32 images; an fp64 learner takes them in float64
        step_fn = _in_float64(step_fn)

    steps_per_epoch = len(train_loader)
    mixup = np.random.default_rng(spec.seed)  # draws each step's mixup / CutMix (Mixup.draw_step)
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
            step_learner.backbone.train()
            method.train()
            train_loader.set_epoch(epoch, skip_batches=loop.batch)
            loop.start_epoch(device)
            synchronize(device)
            resumed_seconds, epoch_start = loop.epoch_seconds, time.perf_counter()
            for index, (images, labels) in enumerate(train_loader, start=loop.batch):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr * lr_factor(loop.step, steps_per_epoch, recipe)
                mix = Mixup.draw_step(mixup, recipe, images.shape, device)
                loss, step_correct = step_fn(images, labels, mix)
                loop.loss_sum += loss * (labels.shape[0] * loss_scale)
                loop.correct += step_correct
                loop.seen += labels.shape[0]
                loop.step += 1
                method.after_update(loop.step, epoch)  # host-side work after the update (a no-op for most heads)
                loop.batch = index + 1
                progress.batch(epoch, index)
                if checkpointing is not None:
                    stop = collective.agreed_stop(checkpointing.should_stop(), loop.step, loop.batch, device)
                    if stop or time.monotonic() - last_save >= checkpointing.every_seconds:
                        synchronize(device)
                        loop.epoch_seconds = resumed_seconds + time.perf_counter() - epoch_start
                        save()
                        if stop:
                            raise Interrupted(f"stopped in epoch {epoch + 1} after batch {index + 1}")
            synchronize(device)
            epoch_seconds = resumed_seconds + time.perf_counter() - epoch_start
            # Under torchrun: the whole global batch's sums, and rank 0's buffers everywhere.
            for total in (loop.loss_sum, loop.correct):
                collective.sum_(total)
            loop.seen = collective.sum_count(loop.seen, device)
            collective.broadcast_buffers(backbone)
            loop.train_seconds += epoch_seconds
            loop.train_images += loop.seen
            diagnostics = method.after_epoch()
            collective.broadcast_buffers(method)
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
                    backbone, method, val_loader, data.num_classes, learner.autocast, collective.sum_,
                    where=f"epoch {epoch + 1}, split val",
                ).accuracy  # fmt: skip
            test = evaluate(backbone, method, test_loader, data.num_classes, learner.autocast, collective.sum_,
                            where=f"epoch {epoch + 1}, split test")  # fmt: skip
            row["test_accuracy"] = test.accuracy
            if val_loader is not None and row["val_accuracy"] > loop.best_val:
                loop.best_val, loop.test_at_best_val, loop.best_epoch = row["val_accuracy"], test.accuracy, epoch + 1
            loop.history.append(row)
            loop.test_per_class = test.per_class
            loop.epoch, loop.batch, loop.loss_sum, loop.correct = epoch + 1, 0, None, None
            progress.end_epoch(epoch, row)
            save()
            stop = checkpointing is not None and collective.any(checkpointing.should_stop(), device)
            if stop and loop.epoch < recipe.epochs:
                raise Interrupted(f"stopped after epoch {epoch + 1}")
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as error:
        raise TrainingFailed(loop.epoch + 1, error) from error
    wall = wall_before + time.perf_counter() - start
    features = feature_report(backbone, method, full_test, data.num_classes, learner.autocast)
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


def _in_float64(step_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``step_fn`` fed float64 images (the fingerprint's fp64 cells)."""

    def step(images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None) -> Any:
        return step_fn(images.to(torch.float64), labels, mix)

    return step
