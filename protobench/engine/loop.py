"""The one training engine: a loop that knows no method by name (docs/engine.md).

A cell (suite x method x dim x seed x ratio) is trained by ``train_cell``: build the backbone and the
method head, then per epoch one pass of SGD/AdamW over the training loader and an evaluation of the
validation and test splits. Metrics are accumulated on the device and read once per epoch, so the
step itself (protobench/engine/step.py) never waits for the host. Device and precision come resolved
(protobench/core/device.py); progress goes to a ``Progress`` (protobench/core/progress.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from protobench.backbones import create_backbone
from protobench.core.device import seed_everything, synchronize
from protobench.core.progress import Progress, SilentProgress
from protobench.data.base import Augment, BatchLoader
from protobench.data.prepare import CellData
from protobench.engine.cell_state import (
    Checkpointing,
    Interrupted,
    LoopState,
    TrainingFailed,
    restore_training_state,
    training_state,
)
from protobench.engine.diagnostics import feature_report
from protobench.engine.distributed import SINGLE_PROCESS, Collective
from protobench.engine.evaluation import evaluate
from protobench.engine.step import Learner, Mixup, TrainStep, step_function
from protobench.heads import create_method
from protobench.suite.recipe import TrainRecipe
from protobench.suite.spec import CellSpec

# Its numerics version (and the step's, the evaluation's) is store/versions.py's ENGINE_VERSION: bump it there.

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
    #: Measured once on the test set after the last epoch (protobench.engine.diagnostics.feature_report).
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
    The phases are docs/engine.md's steps of "One cell: `train_cell`", in order.
    """
    cell = set_up_cell(spec, data, device, cuda_graphs, progress or SilentProgress(), checkpointing, collective)
    steps = cell_steps(cell)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def cell_steps(cell: CellTraining) -> Generator[None, None, CellOutcome]:
    """Train ``cell`` (set up), pausing after every optimiser step; returns its outcome. ``train_cell``
    runs it straight through; a pack (protobench/engine/pack.py) advances several in turn."""
    cell.resume_from_checkpoint()
    cell.start_clock()
    try:
        while cell.loop.epoch < cell.spec.train.epochs:
            epoch_seconds = yield from cell.train_epoch()
            row = cell.gather_epoch(epoch_seconds)
            cell.evaluate_epoch(row)
            cell.end_epoch(row)
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as error:
        raise TrainingFailed(cell.loop.epoch + 1, error) from error
    return cell.outcome()


def set_up_cell(
    spec: CellSpec,
    data: CellData,
    device: torch.device,
    cuda_graphs: bool,
    progress: Progress,
    checkpointing: Checkpointing | None,
    collective: Collective,
) -> CellTraining:
    """Seed, then build the cell's learner, loaders, training step and mixup generator (steps 1 to 4)."""
    recipe = spec.train
    seed_everything(spec.seed, spec.deterministic)
    learner = build_learner(spec, data, device)
    train_loader, val_loader, test_loader = cell_loaders(recipe, data, device, spec.seed, collective)
    step_learner = collective.for_training(learner, device, spec.sync_batchnorm)
    # The diagnostics see the whole test set (under torchrun each rank's loader holds a slice of it).
    full_test = collective.unsliced(test_loader, lambda: cell_loaders(recipe, data, device, spec.seed)[2])
    loss_scale = collective.loss_scale(learner.method.loss_reduction)
    step_fn = step_function(step_learner, device, cuda_graphs and collective.graphs_allowed)
    if spec.precision == "fp64":  # the loader gives float32 images; an fp64 learner takes them in float64
        step_fn = _in_float64(step_fn)
    return CellTraining(
        spec, data, device, learner, step_learner, step_fn, loss_scale, train_loader, val_loader, test_loader,
        full_test, len(train_loader), np.random.default_rng(spec.seed), progress, checkpointing, collective,
    )  # fmt: skip


@dataclass
class CellTraining:
    """One cell as ``train_cell`` trains it: what ``set_up_cell`` built, where the loop is (``loop``,
    which a checkpoint holds) and the clocks of this process's part of the training."""

    spec: CellSpec
    data: CellData
    device: torch.device
    learner: Learner
    step_learner: Learner  # the learner the step trains (under torchrun, wrapped to reduce gradients)
    step_fn: TrainStep
    loss_scale: int
    train_loader: BatchLoader
    val_loader: BatchLoader | None
    test_loader: BatchLoader
    full_test: BatchLoader
    steps_per_epoch: int
    mixup: np.random.Generator  # draws each step's mixup / CutMix (Mixup.draw_step)
    progress: Progress
    checkpointing: Checkpointing | None
    collective: Collective
    loop: LoopState = field(default_factory=LoopState)
    start: float = 0.0  # perf_counter when this process started training
    wall_before: float = 0.0  # wall seconds of the processes before it (a resumed checkpoint's)
    last_save: float = 0.0  # monotonic time of the last save

    def resume_from_checkpoint(self) -> None:
        """Load the saved training state over the fresh learner and generators, if there is one."""
        if self.checkpointing is not None and self.checkpointing.resume is not None:
            self.loop = restore_training_state(self.checkpointing.resume, self.learner, self.mixup, self.device)

    def start_clock(self) -> None:
        """Announce the epochs to the progress and start the wall clock and the time since the last save."""
        self.progress.start_cell_epochs(self.spec.train.epochs, self.steps_per_epoch)
        self.start, self.wall_before = time.perf_counter(), self.loop.wall_seconds
        self.last_save = time.monotonic()

    def train_epoch(self) -> Generator[None, None, float]:
        """One pass over the training loader, from the batch the loop is at, pausing after each step;
        returns its training seconds."""
        loop, device = self.loop, self.device
        self.step_learner.backbone.train()
        self.learner.method.train()
        self.train_loader.set_epoch(loop.epoch, skip_batches=loop.batch)
        loop.start_epoch(device)
        synchronize(device)
        resumed_seconds, epoch_start = loop.epoch_seconds, time.perf_counter()
        for index, (images, labels) in enumerate(self.train_loader, start=loop.batch):
            self.train_batch(images, labels)
            loop.batch = index + 1
            self.progress.batch(loop.epoch, index)
            if self.checkpointing is not None:
                self.checkpoint_inside_epoch(self.checkpointing, resumed_seconds, epoch_start)
            yield
        synchronize(device)
        return resumed_seconds + time.perf_counter() - epoch_start

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Set the step's learning rate, draw its mixing, update, and add its loss and hits to the sums."""
        loop, recipe = self.loop, self.spec.train
        for group in self.learner.optimizer.param_groups:
            group["lr"] = recipe.lr * lr_factor(loop.step, self.steps_per_epoch, recipe)
        mix = Mixup.draw_step(self.mixup, recipe, images.shape, self.device)
        loss, step_correct = self.step_fn(images, labels, mix)
        loop.loss_sum += loss * (labels.shape[0] * self.loss_scale)
        loop.correct += step_correct
        loop.seen += labels.shape[0]
        loop.step += 1
        self.learner.method.after_update(loop.step, loop.epoch)  # host-side work after the update (mostly none)

    def checkpoint_inside_epoch(self, checkpointing: Checkpointing, resumed_seconds: float, epoch_start: float) -> None:
        """Save when asked to stop (then raise ``Interrupted``) or when ``every_seconds`` have passed."""
        loop = self.loop
        stop = self.collective.agreed_stop(checkpointing.should_stop(), loop.step, loop.batch, self.device)
        if stop or time.monotonic() - self.last_save >= checkpointing.every_seconds:
            synchronize(self.device)
            loop.epoch_seconds = resumed_seconds + time.perf_counter() - epoch_start
            self.save()
            if stop:
                raise Interrupted(f"stopped in epoch {loop.epoch + 1} after batch {loop.batch}")

    def gather_epoch(self, epoch_seconds: float) -> dict[str, float]:
        """Sum the epoch over ranks, run the head's ``after_epoch`` and make the epoch's history row."""
        loop, collective, method = self.loop, self.collective, self.learner.method
        # Under torchrun: the whole global batch's sums, and rank 0's buffers everywhere.
        for total in (loop.loss_sum, loop.correct):
            collective.sum_(total)
        loop.seen = collective.sum_count(loop.seen, self.device)
        collective.broadcast_buffers(self.learner.backbone)
        loop.train_seconds += epoch_seconds
        loop.train_images += loop.seen
        diagnostics = method.after_epoch()
        collective.broadcast_buffers(method)
        row: dict[str, float] = {
            "epoch": loop.epoch + 1,
            "lr": self.learner.optimizer.param_groups[0]["lr"],
            "train_loss": float(loop.loss_sum) / max(1, loop.seen),
            "train_accuracy": 100 * float(loop.correct) / max(1, loop.seen),
            "images_per_second": loop.seen / epoch_seconds,
            **{k: float(v) for k, v in diagnostics.items()},
        }
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"training loss became {row['train_loss']} in epoch {loop.epoch + 1}")
        return row

    def evaluate_epoch(self, row: dict[str, float]) -> None:
        """Evaluate validation (if any) and test into ``row``; keep the best validation epoch and the row."""
        loop, learner, epoch = self.loop, self.learner, self.loop.epoch
        if self.val_loader is not None:
            row["val_accuracy"] = evaluate(
                learner.backbone, learner.method, self.val_loader, self.data.num_classes, learner.autocast,
                self.collective.sum_, where=f"epoch {epoch + 1}, split val",
            ).accuracy  # fmt: skip
        test = evaluate(learner.backbone, learner.method, self.test_loader, self.data.num_classes, learner.autocast,
                        self.collective.sum_, where=f"epoch {epoch + 1}, split test")  # fmt: skip
        row["test_accuracy"] = test.accuracy
        if self.val_loader is not None and row["val_accuracy"] > loop.best_val:
            loop.best_val, loop.test_at_best_val, loop.best_epoch = row["val_accuracy"], test.accuracy, epoch + 1
        loop.history.append(row)
        loop.test_per_class = test.per_class

    def end_epoch(self, row: dict[str, float]) -> None:
        """Move the loop to the next epoch, report the row, save, and stop here if asked to."""
        loop, epoch = self.loop, self.loop.epoch
        loop.epoch, loop.batch, loop.loss_sum, loop.correct = epoch + 1, 0, None, None
        self.progress.end_epoch(epoch, row)
        self.save()
        stop = self.checkpointing is not None and self.collective.any(self.checkpointing.should_stop(), self.device)
        if stop and loop.epoch < self.spec.train.epochs:
            raise Interrupted(f"stopped after epoch {epoch + 1}")

    def save(self) -> None:
        """Hand the whole training state to ``checkpointing.save`` (none without one); the loss must be finite."""
        loop = self.loop
        if self.checkpointing is not None:
            loop.wall_seconds = self.wall_before + time.perf_counter() - self.start
            if loop.loss_sum is not None and not math.isfinite(float(loop.loss_sum)):
                raise FloatingPointError(f"training loss became {float(loop.loss_sum)} in epoch {loop.epoch + 1}")
            self.checkpointing.save(training_state(self.learner, loop, self.mixup))
            self.last_save = time.monotonic()

    def outcome(self) -> CellOutcome:
        """The trained cell's metrics, history, timings, test-set diagnostics and final state (step 6)."""
        loop, learner = self.loop, self.learner
        wall = self.wall_before + time.perf_counter() - self.start
        features = feature_report(learner.backbone, learner.method, self.full_test, self.data.num_classes,
                                  learner.autocast)  # fmt: skip
        last = loop.history[-1]
        metrics: dict[str, float | int | None] = {
            "test_accuracy": last["test_accuracy"],
            "val_accuracy": last.get("val_accuracy"),
            "test_accuracy_at_best_val": loop.test_at_best_val,
            "best_val_accuracy": loop.best_val if self.val_loader is not None else None,
            "best_val_epoch": loop.best_epoch,
            "train_accuracy": last["train_accuracy"],
            "train_loss": last["train_loss"],
            "train_images_per_second": loop.train_images / loop.train_seconds,
        }
        return CellOutcome(
            metrics=metrics,
            per_class_accuracy=loop.test_per_class,
            history=loop.history,
            method_hyperparameters=learner.method.hyperparameters(),
            timings={"wall_seconds": wall, "train_seconds": loop.train_seconds},
            diagnostics=features.values,
            embeddings=features.embeddings,
            state={
                "backbone": learner.backbone.state_dict(),
                "method": learner.method.state_dict(),
                "optimizer": learner.optimizer.state_dict(),
            },
        )


def _in_float64(step_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``step_fn`` fed float64 images (the fingerprint's fp64 cells)."""

    def step(images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None) -> Any:
        return step_fn(images.to(torch.float64), labels, mix)

    return step
