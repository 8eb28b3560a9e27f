"""One training step: mixup or CutMix, forward, loss, backward and the head's bookkeeping, then the update.

``forward_backward`` is the step up to the optimiser update; ``train_step`` adds the update;
``GraphedTrainStep`` replays the former from a CUDA graph; ``step_function`` picks one of the two
for a learner (docs/engine.md, "The step").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from protobench.core.device import at_least_fp32, replays_graphs
from protobench.heads.base import Method, StepMemo

if TYPE_CHECKING:
    from protobench.suite.recipe import TrainRecipe


@dataclass
class Learner:
    """What one cell trains: backbone, method head and optimiser on one device, and its autocast."""

    backbone: nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    autocast: Callable[[], Any]


#: A CutMix box, rows ``y0:y1`` and columns ``x0:x1`` of the image: Python ints on the eager path,
#: 0-dim integer device tensors on the graph path.
Box = tuple[Any, Any, Any, Any]
#: The box of a mixup step in a recipe that also has CutMix: covers nothing.
NO_BOX: Box = (0, 0, 0, 0)


@dataclass(frozen=True)
class Mixup:
    """One step's mixing of the batch with its permutation ``partner``: losses weighted ``weight`` for
    the own labels and ``partner_weight`` for the partner's; ``own_dominant`` says whether the own
    labels carry the larger weight (the head's bookkeeping sees the dominant labels).

    The images are mixed one of two ways. Mixup (``cutmix`` false) blends whole images, ``weight`` x
    own + ``partner_weight`` x partner. CutMix (``cutmix`` true) pastes the partner's ``box`` into
    each image; ``weight`` is then the share of the image left its own. ``box`` is None when the
    recipe has no CutMix; otherwise every step carries one (``NO_BOX`` on mixup steps), so a step
    recorded as a CUDA graph serves both kinds.

    Python numbers on the eager path; 0-dim device tensors filled per step (``fill``) when the step
    is replayed from a CUDA graph, filled from the same numbers so both paths compute bit for bit alike.
    """

    weight: float | torch.Tensor
    partner_weight: float | torch.Tensor
    own_dominant: bool | torch.Tensor
    partner: torch.Tensor
    box: Box | None = None
    cutmix: bool | torch.Tensor = False

    @classmethod
    def from_lambda(cls, lam: float, partner: torch.Tensor, box: Box | None = None, cutmix: bool = False) -> Mixup:
        """Own weight ``lam`` (mixup: drawn from Beta(alpha, alpha); CutMix: the share outside the box)."""
        return cls(lam, 1.0 - lam, lam >= 0.5, partner, box, cutmix)

    @classmethod
    def draw(cls, rng: np.random.Generator, alpha: float, batch: int, device: torch.device) -> Mixup | None:
        """The next step's mixup: lambda from Beta(alpha, alpha) on the host (no device round trip), a
        random permutation on the device; None when ``alpha`` is 0 or less (no mixup)."""
        if alpha <= 0:
            return None
        lam = float(rng.beta(alpha, alpha))
        return cls.from_lambda(lam, torch.randperm(batch, device=device))

    @classmethod
    def draw_cutmix(cls, rng: np.random.Generator, alpha: float, shape: Sequence[int], device: torch.device) -> Mixup:
        """The next step's CutMix for a batch of ``shape`` (batch, ..., height, width): lambda from
        Beta(alpha, alpha) and the box (``cutmix_box``) on the host, the permutation on the device."""
        lam = float(rng.beta(alpha, alpha))
        box, own = cutmix_box(rng, lam, shape[-2], shape[-1])
        return cls.from_lambda(own, torch.randperm(shape[0], device=device), box, cutmix=True)

    @classmethod
    def draw_step(
        cls, rng: np.random.Generator, recipe: TrainRecipe, shape: Sequence[int], device: torch.device
    ) -> Mixup | None:
        """The next step's mixing under ``recipe`` for a batch of ``shape``; None without mixup and CutMix.

        Without CutMix this is ``draw``, draw for draw. With CutMix alone every step is CutMix. With
        both, one uniform draw per step picks CutMix with probability ``cutmix_prob``, else mixup
        (docs/engine.md, "The step"). Every number comes from ``rng``, so a seeded run repeats.
        """
        if recipe.cutmix_alpha <= 0:
            return cls.draw(rng, recipe.mixup_alpha, shape[0], device)
        if recipe.mixup_alpha > 0 and float(rng.random()) >= recipe.cutmix_prob:
            lam = float(rng.beta(recipe.mixup_alpha, recipe.mixup_alpha))
            return cls.from_lambda(lam, torch.randperm(shape[0], device=device), NO_BOX)
        return cls.draw_cutmix(rng, recipe.cutmix_alpha, shape, device)

    def mixed(self, images: torch.Tensor) -> torch.Tensor:
        """The mixed batch. On the graph path (``cutmix`` a device bool) both mixes are computed and
        ``torch.where`` keeps the step's, which selects values exactly: the eager numbers, bit for bit."""
        partner_images = images[self.partner]
        if self.box is None or (not isinstance(self.cutmix, torch.Tensor) and not self.cutmix):
            return torch.lerp(partner_images, images, self.weight)
        inside = box_mask(self.box, images.shape[-2], images.shape[-1], images.device)
        pasted = torch.where(inside, partner_images, images)
        if not isinstance(self.cutmix, torch.Tensor):
            return pasted
        return torch.where(self.cutmix, pasted, torch.lerp(partner_images, images, self.weight))

    def buffers(self) -> Mixup:
        """Zeroed device tensors for every field of a step of this kind: the static inputs of a CUDA graph."""
        scalar = functools.partial(torch.zeros, (), device=self.partner.device)
        box: Box | None = None
        cutmix: bool | torch.Tensor = False
        if self.box is not None:
            bound = functools.partial(scalar, dtype=torch.long)
            box = (bound(), bound(), bound(), bound())
            cutmix = scalar(dtype=torch.bool)
        return Mixup(scalar(), scalar(), scalar(dtype=torch.bool), torch.empty_like(self.partner), box, cutmix)

    def fill(self, buffers: Mixup) -> None:
        """Write this step's numbers into ``buffers`` (``buffers()`` of a step of the same kind)."""
        buffers.weight.fill_(self.weight)  # type: ignore[union-attr]
        buffers.partner_weight.fill_(self.partner_weight)  # type: ignore[union-attr]
        buffers.own_dominant.fill_(self.own_dominant)  # type: ignore[union-attr]
        buffers.partner.copy_(self.partner)
        if self.box is not None and buffers.box is not None:
            for buffer, value in zip(buffers.box, self.box, strict=True):
                buffer.fill_(value)
            buffers.cutmix.fill_(self.cutmix)  # type: ignore[union-attr]

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


def cutmix_box(rng: np.random.Generator, lam: float, height: int, width: int) -> tuple[Box, float]:
    """A box of about ``1 - lam`` of a ``height`` x ``width`` image and the share of the image it leaves.

    As in CutMix (Yun et al., ICCV 2019): sides ``sqrt(1 - lam)`` times the image's, a uniformly random
    centre (row drawn first, then column), clipped to the image; the clipping (and rounding) makes the
    box smaller, so the own weight is recomputed from the box's real area.
    """
    side = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * side) // 2, int(width * side) // 2
    row, col = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(row - half_h, 0), min(row + half_h, height)
    x0, x1 = max(col - half_w, 0), min(col + half_w, width)
    return (y0, y1, x0, x1), 1.0 - (y1 - y0) * (x1 - x0) / (height * width)


def box_mask(box: Box, height: int, width: int, device: torch.device) -> torch.Tensor:
    """A (height, width) bool mask, true inside ``box``: built by broadcasting row against column
    indices, so it is one set of kernels for the whole batch and the bounds may be device scalars."""
    y0, y1, x0, x1 = box
    rows = torch.arange(height, device=device).unsqueeze(1)
    cols = torch.arange(width, device=device)
    return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


def forward_backward(
    learner: Learner, images: torch.Tensor, labels: torch.Tensor, mix: Mixup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step up to (not including) the optimiser update: forward, loss, fresh gradients
    and the head's bookkeeping. Returns the loss and the number of correct predictions (device scalars).
    With ``mix`` it trains on the batch mixed with its permutation (mixup or CutMix, ``Mixup.mixed``).

    The head's bookkeeping gets the step's labels and the memo of the loss call on them (the
    method contract, protobench/heads/base.py); with mixup, those of the dominant label set.
    """
    backbone, method = learner.backbone, learner.method
    if mix is not None:
        images = mix.mixed(images)
    with learner.autocast():
        z = backbone(images)
    h = method(at_least_fp32(z))
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
    recorded addresses: every method updates its state in place (tests/engine/test_loop.py checks it).
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
        elif images.shape != self.images.shape or mix_kind(mix) != mix_kind(self.mix):
            self.grads_in_place = False  # the eager step gives the parameters new gradient tensors
            return train_step(self.learner, images, labels, mix)
        self.images.copy_(images)
        self.labels.copy_(labels)
        if mix is not None and self.mix is not None:
            mix.fill(self.mix)
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
        self.mix = None if mix is None else mix.buffers()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.correct = forward_backward(self.learner, self.images, self.labels, self.mix)
        # The recorded backward writes these gradient tensors; the eager update reads them.
        self.grads = [p.grad for p in self.params]
        self.grads_in_place = True


def mix_kind(mix: Mixup | None) -> tuple[bool, bool]:
    """What a recorded step's inputs hold: (any mixing, a CutMix box). A step of another kind runs eagerly."""
    return mix is not None, mix is not None and mix.box is not None


def step_function(learner: Learner, device: torch.device, cuda_graphs: bool) -> TrainStep:
    """The learner's training step: replayed from a CUDA graph where ``replays_graphs`` says so, else eager."""
    if replays_graphs(device, cuda_graphs):
        return GraphedTrainStep(learner)
    return functools.partial(train_step, learner)
