"""The method interface: what a classifier head must provide to train on the shared engine.

A method sits between the backbone's d-dim embedding and the class scores. The engine calls,
per training step (protobench/step.py, docs/engine.md)::

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from protobench.errors import UserError
from protobench.registry import Registry

#: The training regimes: HPN's squared cosine on balanced data, the dot-regression loss on long-tailed
#: data (docs/methods.md, "Loss families").
LOSS_FAMILIES: tuple[str, ...] = ("balanced", "long-tailed")

#: Values a head's training loss computed that its after_step reuses (empty: none).
StepMemo = tuple[torch.Tensor, ...]


class NotApplicable(Exception):
    """A method cannot run at this (classes, dim) setting; the reason goes into the record as n/a."""


@dataclass(frozen=True)
class OptionRange:
    """The values one option of a head may take (``Method.option_ranges``): one of ``choices``, or a
    finite number from ``low`` to ``high`` (an end left out with ``open_low`` / ``open_high``; a whole
    number with ``integer``; None allowed with ``none``). ``check_options`` holds every option a suite
    sets to it when the suite is loaded, so a bad value stops the run before its first cell trains."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    none: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is no value of option ``name`` (``momentum is 5; use 0 <= momentum < 1``), or None."""
        if self.choices:
            return None if value in self.choices else f"unknown {name} {value!r}; allowed: {', '.join(self.choices)}"
        if value is None and self.none:
            return None
        kind = int if self.integer else int | float
        if isinstance(value, bool) or not isinstance(value, kind) or not self.holds(value):
            return f"{name} is {value!r}; use {self.describe(name)}"
        return None

    def holds(self, value: float) -> bool:
        """True when the number ``value`` is finite and within the range."""
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def describe(self, name: str) -> str:
        """The range in words: ``0 <= momentum < 1``, ``temperature > 0``, ``a whole number sub_centroids >= 1``."""
        low = "" if self.low is None else f"{self.low:g} {'<' if self.open_low else '<='} "
        high = "" if self.high is None else f" {'<' if self.open_high else '<='} {self.high:g}"
        if self.low is not None and self.high is None:  # one bound: `temperature > 0` reads better than `0 < t`
            low, high = "", f" {'>' if self.open_low else '>='} {self.low:g}"
        text = f"{low}{name}{high}"
        return f"a whole number {text}" if self.integer else text


#: The ranges most options share.
POSITIVE = OptionRange(low=0, open_low=True)
NON_NEGATIVE = OptionRange(low=0)
UNIT_INTERVAL = OptionRange(low=0, high=1, open_high=True)  # [0, 1): an EMA weight, a label smoothing


class Method(nn.Module):
    """Base class of every classifier head. Subclasses set ``defaults`` and implement ``scores`` and
    ``loss`` (or ``step_loss``, when their bookkeeping reuses what the loss computed)."""

    #: The registered name (set by ``register_method``), for error messages.
    method_name: ClassVar[str] = ""
    #: Documented hyperparameters with their defaults, stated here only: ``create_method`` passes
    #: each to ``__init__`` as a keyword; a suite may override any of them, nothing else.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Options added after results were recorded: passed to ``__init__`` and recorded like ``defaults``,
    #: but part of a cell's config (and so its hash) only when set away from their default, so the
    #: configs of cells recorded before an option existed keep their hashes (``resolved_options``).
    later_defaults: ClassVar[dict[str, Any]] = {}
    #: The values an option of ``defaults`` or ``later_defaults`` may take, where not every value of its
    #: type works (an option left out takes any): checked for every option a suite sets, when the suite is
    #: loaded, and by ``create_method``. A subclass extends its base's: ``{**Base.option_ranges, ...}``.
    option_ranges: ClassVar[dict[str, OptionRange]] = {}
    #: The numerics version of this head (its loss, bookkeeping and prediction): bump it with any change
    #: that moves its cells' numbers, and re-make the fingerprint in the same commit (docs/engine.md,
    #: "Numerics versions"). Records made with an older version are stale and trained again.
    numerics_version: ClassVar[int] = 1

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

    @classmethod
    def dimension_problem(cls, num_classes: int, dim: int) -> str | None:
        """Why this head cannot exist at (``num_classes``, ``dim``), e.g. a simplex below d = K-1: the
        constructor raises it as ``NotApplicable`` and a dry run counts the cell n/a. None: it can."""
        return None

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters (an attribute per key of ``defaults`` and ``later_defaults``),
        recorded with every result."""
        return {name: getattr(self, name) for name in {**self.defaults, **self.later_defaults}}


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a head under ``name`` (timm's register_model idea) and name it so."""

    def add(cls: type[Method]) -> type[Method]:
        cls.method_name = name
        return METHODS.register(name)(cls)

    return add


def check_loss_family(method: str, family: str) -> None:
    """Reject a loss family the method does not know, naming the allowed ones."""
    if family not in LOSS_FAMILIES:
        raise UserError(f"method '{method}': unknown loss family {family!r}; allowed: {', '.join(LOSS_FAMILIES)}")


def check_options(name: str, options: Mapping[str, Any], where: str = "") -> None:
    """A UserError naming the first option ``name`` does not document, and the allowed ones, or the first
    value outside its option's range (``Method.option_ranges``) and that range."""
    cls = METHODS.get(name)
    allowed = {**cls.defaults, **cls.later_defaults}
    unknown = sorted(set(options) - set(allowed))
    prefix = f"{where}: " if where else ""
    if unknown:
        choices = ", ".join(sorted(allowed)) or "none"
        raise UserError(f"{prefix}method '{name}' has no option '{unknown[0]}'; allowed: {choices}")
    for option, value in options.items():
        if option in cls.option_ranges and (problem := cls.option_ranges[option].problem(option, value)):
            raise UserError(f"{prefix}method '{name}': {problem}")


def resolved_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Method ``name``'s defaults with ``options`` over them (unknown options are errors): a cell's
    ``method_options``. An option of ``later_defaults`` appears only when set away from its default."""
    check_options(name, options)
    later = METHODS.get(name).later_defaults
    changed = {key: value for key, value in options.items() if key not in later or value != later[key]}
    return {**METHODS.get(name).defaults, **changed}


def head_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option method ``name`` is built with: ``resolved_options`` with the ``later_defaults`` it
    leaves out of a cell's config filled back in (``create_method`` passes these; ``suites show`` prints them)."""
    cls = METHODS.get(name)
    return {**cls.defaults, **cls.later_defaults, **resolved_options(name, options)}


def create_method(
    name: str, num_classes: int, dim: int, *, seed: int = 0, loss_family: str = "balanced", **options: Any
) -> Method:
    """Build method ``name``; ``options`` override its documented defaults (unknown ones are errors)."""
    return METHODS.get(name)(num_classes, dim, seed=seed, loss_family=loss_family, **head_options(name, options))


def prototype_request(method: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(generator, its parameters) method ``method``'s fixed prototypes come from with ``options``, or
    None for a head without fixed prototypes."""
    from protobench.prototypes import get_generator

    kind = getattr(METHODS.get(method), "prototype_kind", None)
    if kind is None:
        return None
    resolved = resolved_options(method, options)
    kind = resolved.get("prototype_kind", kind)  # a head whose generator is an option (dl2pa's ablations)
    accepted = get_generator(kind).defaults
    return kind, {k: v for k, v in resolved.items() if k in accepted}
