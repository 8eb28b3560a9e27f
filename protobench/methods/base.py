"""The method interface: what a classifier head must provide to train on the shared engine.

A method sits between the backbone's d-dim embedding and the class scores. The engine calls,
per training step::

    h = method(z)                      # head features (may apply BatchNorm / L2, may be z itself)
    loss = method.loss(h, y)           # (with mixup: lam * loss(h, y_a) + (1 - lam) * loss(h, y_b))
    ...backward, optimiser step...
    method.after_step(h.detach(), y)   # no-grad bookkeeping, e.g. DL2PA's class representatives

after each epoch ``method.after_epoch()`` (returns per-epoch diagnostics, e.g. how many classes
changed prototype), and at evaluation ``method.predict(method(z))``. Everything a method must
keep (prototypes, assignment, representatives, centroids) lives in parameters or registered
buffers, so ``state_dict()`` is its checkpoint and ``.to(device)`` moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from protobench.registry import Registry


class NotApplicable(Exception):
    """A method cannot run at this (classes, dim) setting; the reason goes into the record as n/a."""


class Method(nn.Module):
    """Base class of every classifier head. Subclasses set ``defaults`` and implement ``scores``/``loss``."""

    #: Documented hyperparameters with their defaults; a suite may override any of them, nothing else.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, num_classes: int, dim: int, *, seed: int = 0, loss_family: str = "balanced") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.seed = seed
        self.loss_family = loss_family
        # What this step's training-loss calls kept for its after_step: (features, labels, values) each.
        self._step_memos: list[tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Head features from the backbone embedding ``z`` (N x d). Default: ``z`` unchanged."""
        return z

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Class scores (N x K) from head features; larger is more likely."""
        raise NotImplementedError

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (a scalar) of head features ``h`` for labels ``y``."""
        raise NotImplementedError

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """Predicted class per row."""
        return self.scores(h).argmax(dim=1)

    def remember_for_step(self, h: torch.Tensor, y: torch.Tensor, *values: torch.Tensor) -> None:
        """Keep ``values`` the training loss computed from ``h`` and ``y`` for this step's after_step
        (the last two calls: with mixup the loss runs once per label set)."""
        if self.training:
            self._step_memos = [*self._step_memos[-1:], (h.detach(), y, values)]

    def recall_for_step(self, h: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...] | None:
        """The values remember_for_step kept, if computed from these features (and, when ``y`` is
        given, these labels); else None. Consumed: memos serve one step only.

        With mixup the step's labels are those of one of the two loss calls, the dominant one: the
        very tensor on the eager path, a copy picked on the device when the step is replayed from a
        CUDA graph. Then the memo is picked on the device too, whole (labels equal to the first
        call's: its values, else the second's), with no host synchronisation.
        """
        memos = [m for m in self._step_memos if m[0].data_ptr() == h.data_ptr() and m[0].shape == h.shape]
        self._step_memos = []
        if not memos:
            return None
        if y is None:
            return memos[-1][2]
        for _, labels, values in reversed(memos):
            if labels is y:
                return values
        if len(memos) < 2 or y.shape != memos[0][1].shape:
            return None
        (_, first_labels, first), (_, _, second) = memos
        is_first = (y == first_labels).all()
        return tuple(torch.where(is_first, a, b) for a, b in zip(first, second, strict=True))

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor) -> None:
        """Called after every optimiser step with detached features; no host synchronisation here."""

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        """Called after every training epoch; returns diagnostics to record for that epoch."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters (an attribute per key of ``defaults``), recorded with every result."""
        return {name: getattr(self, name) for name in self.defaults}


MethodBuilder = Callable[..., Method]
METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register


def create_method(
    name: str, num_classes: int, dim: int, *, seed: int = 0, loss_family: str = "balanced", **options: Any
) -> Method:
    """Build method ``name``; ``options`` override its documented defaults (unknown ones are errors)."""
    from protobench.errors import UserError

    cls = METHODS.get(name)
    unknown = sorted(set(options) - set(cls.defaults))
    if unknown:
        allowed = ", ".join(sorted(cls.defaults)) or "none"
        raise UserError(f"method '{name}' has no option {', '.join(unknown)}; allowed: {allowed}")
    return cls(num_classes, dim, seed=seed, loss_family=loss_family, **{**cls.defaults, **options})
