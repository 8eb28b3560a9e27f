"""A cell's training state: what a checkpoint holds and how training continues from it (docs/long-runs.md).

``LoopState`` is where the engine's loop is and what it has measured; ``training_state`` adds the
learner's own state and every random number generator, ``restore_training_state`` puts it all back.
``Checkpointing`` is how the runner asks ``engine.train_cell`` to save and resume; ``Interrupted`` and
``TrainingFailed`` are how training ends early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from protobench.core.device import restore_rng, rng_state
from protobench.engine.step import Learner


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
