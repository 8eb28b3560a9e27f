"""The head interface: what a method computes to train on the shared engine (its card, in
protobench/methods/card.py, says what it is).

A method sits between the backbone's d-dim embedding and the class scores. The engine calls,
per training step (protobench/engine/step.py, docs/engine.md)::

    h = method(z)                            # head features (may apply BatchNorm / L2, may be z itself)
    loss, memo = method.step_loss(h, y)      # with mixup twice: lam * own labels + (1 - lam) * partner's
    ...backward...
    method.after_step(h.detach(), y, memo)   # no-grad bookkeeping, e.g. DL2PA's class representatives

``memo`` is what the loss computed that the bookkeeping reuses (a tuple of tensors, empty by
default); with mixup, ``y`` and ``memo`` are those of the dominant label set. After each epoch
``method.after_epoch()`` (returns per-epoch diagnostics, e.g. how many classes changed prototype),
and at evaluation ``method.predict(method(z))``. After every optimiser update (outside the step,
which a CUDA graph may replay) ``train_cell`` calls ``method.after_update(step, epoch)`` on the host.
Everything a method must keep (prototypes, assignment, representatives, centroids) lives in
parameters or registered buffers, updated in place, so ``state_dict()`` is its checkpoint,
``.to(device)`` moves it and a CUDA graph replays it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from protobench.methods.card import MethodCard

#: Values a head's training loss computed that its after_step reuses (empty: none).
StepMemo = tuple[torch.Tensor, ...]


class Method(nn.Module):
    """Base class of every classifier head. Subclasses set ``card`` and implement ``scores`` and
    ``loss`` (or ``step_loss``, when their bookkeeping reuses what the loss computed); every option
    of the card reaches ``__init__`` as a keyword."""

    #: The card this head computes (protobench/methods/): its name, options, ranges and versions.
    card: ClassVar[type[MethodCard]] = MethodCard

    def __init__(self, num_classes: int, dim: int, *, seed: int = 0, loss_family: str = "balanced") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.seed = seed
        self.loss_family = loss_family
        #: How the training loss reduces over the batch, "mean" or "sum" (the balanced squared-cosine
        #: heads sum, as the paper does). Data-parallel training scales a sum by the number of ranks,
        #: since averaging per-rank sums would give 1/ranks of the whole batch's sum.
        self.loss_reduction = "mean"
        self._rank_sum: Callable[[torch.Tensor], torch.Tensor] | None = None

    def set_rank_sum(self, rank_sum: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Data-parallel training (docs/distributed.md) hands over the in-place sum over ranks."""
        self._rank_sum = rank_sum

    def sum_over_ranks(self, statistic: torch.Tensor) -> torch.Tensor:
        """``statistic`` summed over data-parallel ranks, in place (unchanged in one process).

        The one hook of data-parallel training: a head calls it on each per-batch sum (feature sums,
        counts) before that sum updates its state, so every rank applies the same update and the state
        stays identical across ranks.
        """
        return self._rank_sum(statistic) if self._rank_sum is not None else statistic

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Head features from the backbone embedding ``z`` (N x d). Default: ``z`` unchanged."""
        return z

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Class scores (N x K) from head features; larger is more likely."""
        raise NotImplementedError

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (a scalar) of head features ``h`` for labels ``y``."""
        raise NotImplementedError

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        """The training loss and what this step's ``after_step`` reuses of it. Default: no memo."""
        return self.loss(h, y), ()

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """Predicted class per row."""
        return self.scores(h).argmax(dim=1)

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor, memo: StepMemo = ()) -> None:
        """Called every training step with detached features, the step's labels and the memo of
        ``step_loss`` on them (empty: recompute); updates buffers in place, never syncs with the host."""

    def after_update(self, step: int, epoch: int) -> None:
        """Called by ``train_cell`` on the host after every optimiser update: ``step`` updates done so
        far in the run, in (0-based) ``epoch``. For work the step itself cannot do because it needs
        the host (it may be replayed from a CUDA graph); the default does nothing and syncs nothing."""

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        """Called after every training epoch; returns diagnostics to record for that epoch."""
        return {}

    def class_anchors(self) -> torch.Tensor | None:
        """K x d: what each class's features are pulled to or scored against (its assigned prototype,
        classifier row or centroid), for the diagnostics; None when a head has no such vector."""
        return None

    @property
    def method_name(self) -> str:
        """The registered name of the method, for messages."""
        return self.card.name

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters (an attribute per option of the card), recorded with every result."""
        return {name: getattr(self, name) for name in self.card.option_names()}
