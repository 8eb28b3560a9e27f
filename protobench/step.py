"""One training step: mixup, forward, loss, backward and the head's bookkeeping, then the update.

``forward_backward`` is the step up to the optimiser update; ``train_step`` adds the update;
``GraphedTrainStep`` replays the former from a CUDA graph; ``step_function`` picks one of the two
for a learner (docs/engine.md, "The step").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from protobench.device import replays_graphs
from protobench.methods.base import Method, StepMemo


@dataclass
class Learner:
    """What one cell trains: backbone, method head and optimiser on one device, and its autocast."""

    backbone: nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    autocast: Callable[[], Any]


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
        random permutation on the device; None when ``alpha`` is 0 or less (no mixup)."""
        if alpha <= 0:
            return None
        lam = float(rng.beta(alpha, alpha))
        return cls.from_lambda(lam, torch.randperm(batch, device=device))

    def dominant(
        self, labels: torch.Tensor, memo: StepMemo, partner_labels: torch.Tensor, partner_memo: StepMemo
    ) -> tuple[torch.Tensor, StepMemo]:
        """The labels and loss memo of the label set with the larger weight: picked in Python on
        the eager path, on the device (``torch.where``, no host sync) when ``own_dominant`` is a tensor."""
        if not isinstance(self.own_dominant, torch.Tensor):
            return (labels, memo) if self.own_dominant else (partner_labels, partner_memo)
        own = self.own_dominant
        picked = tuple(torch.where(own, a, b) for a, b in zip(memo, partner_memo, strict=True))
        return torch.where(own, labels, partner_labels), picked


def forward_backward(
    learner: Learner, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step up to (not including) the optimiser update: forward, loss, fresh gradients
    and the head's bookkeeping. Returns the loss and the number of correct predictions (device scalars).
    With ``mix`` it trains on the mixup of the batch with its permutation.

    The head's bookkeeping gets the step's labels and the memo of the loss call on them (the
    method contract, protobench/methods/base.py); with mixup, those of the dominant label set.
    """
    backbone, method = learner.backbone, learner.method
    if mix is not None:
        images = torch.lerp(images[mix.partner], images, mix.weight)
    with learner.autocast():
        z = backbone(images)
    h = method(z.float())
    if mix is None:
        loss, memo = method.step_loss(h, labels)
        step_labels = labels
    else:
        partner_labels = labels[mix.partner]
        own_loss, own_memo = method.step_loss(h, labels)
        partner_loss, partner_memo = method.step_loss(h, partner_labels)
        loss = mix.weight * own_loss + mix.partner_weight * partner_loss
        step_labels, memo = mix.dominant(labels, own_memo, partner_labels, partner_memo)
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        # The bookkeeping reads the detached features and the head's buffers, never a parameter
        # the optimiser is about to change, so it may run before the update.
        h = h.detach()
        method.after_step(h, step_labels, memo)
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
