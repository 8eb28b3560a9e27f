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
        # What the training loss kept for this step's after_step: (features, labels, values).
        self._step_memo: tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]] | None = None

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
        """Keep ``values`` the training loss computed from ``h`` and ``y`` for this step's after_step."""
        if self.training:
            self._step_memo = (h.detach(), y, values)

    def recall_for_step(self, h: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...] | None:
        """The values remember_for_step kept, if they were computed from these features (and, when
        ``y`` is given, these labels: with mixup the step's labels may not be the last loss call's);
        else None. Consumed: a memo serves one step only."""
        memo, self._step_memo = self._step_memo, None
        if memo is None or memo[0].data_ptr() != h.data_ptr() or memo[0].shape != h.shape:
            return None
        if y is not None and memo[1] is not y:
            return None
        return memo[2]

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
