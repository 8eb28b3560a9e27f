"""A method's card: what a classifier head is, without torch (docs/adding-a-method.md).

A method has two halves. Its **card** (this module's ``MethodCard``, one subclass per method in
``protobench/methods/``) says what it is: its name, its documented options with their defaults and
ranges, its numerics version, the generator of its fixed prototypes and the (classes, dim) settings
it cannot serve. Its **head** (an ``nn.Module`` in ``protobench/heads/``, named by the card's ``head``)
is what it computes. Loading a suite, listing methods, checking records and reporting read only cards,
so they import no torch; ``heads.create_method`` imports the head when a cell trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from protobench.core.errors import UserError
from protobench.core.registry import Registry

#: The training regimes: HPN's squared cosine on balanced data, the dot-regression loss on long-tailed
#: data (docs/methods.md, "Loss families").
LOSS_FAMILIES: tuple[str, ...] = ("balanced", "long-tailed")


class NotApplicable(Exception):
    """A method cannot run at this (classes, dim) setting; the reason goes into the record as n/a."""


@dataclass(frozen=True)
class OptionRange:
    """The values one option of a head may take (``MethodCard.option_ranges``): one of ``choices``, or a
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


class MethodCard:
    """Base class of every method's card. A subclass sets ``defaults`` (and ``later_defaults``,
    ``option_ranges`` where needed), ``head`` (through ``register_method``) and its docstring, whose
    first line ``protobench methods`` shows."""

    #: The registered name (set by ``register_method``).
    name: ClassVar[str] = ""
    #: The head that computes it, as ``module.Class`` (set by ``register_method``); imported only to train
    #: (``heads.head_of``).
    head: ClassVar[str] = ""
    #: Documented hyperparameters with their defaults, stated here only: ``heads.create_method`` passes
    #: each to the head's ``__init__`` as a keyword; a suite may override any of them, nothing else.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Options added after results were recorded: passed to the head and recorded like ``defaults``,
    #: but part of a cell's config (and so its hash) only when set away from their default, so the
    #: configs of cells recorded before an option existed keep their hashes (``resolved_options``).
    later_defaults: ClassVar[dict[str, Any]] = {}
    #: The values an option of ``defaults`` or ``later_defaults`` may take, where not every value of its
    #: type works (an option left out takes any): checked for every option a suite sets, when the suite is
    #: loaded, and by ``heads.create_method``. A subclass extends its base's: ``{**Base.option_ranges, ...}``.
    option_ranges: ClassVar[dict[str, OptionRange]] = {}
    #: The numerics version of this method (its head's loss, bookkeeping and prediction): bump it with any
    #: change that moves its cells' numbers, and re-make the fingerprint in the same commit (docs/engine.md,
    #: "Numerics versions"). Records made with an older version are stale and trained again.
    numerics_version: ClassVar[int] = 1
    #: The generator of the head's fixed prototypes (``protobench.prototypes``), None for a head without
    #: them; an option of the same name overrides it (dl2pa's ablations).
    prototype_kind: ClassVar[str | None] = None

    @classmethod
    def option_names(cls) -> list[str]:
        """Every option the head is built with: ``defaults`` then ``later_defaults``."""
        return list({**cls.defaults, **cls.later_defaults})

    @classmethod
    def summary(cls) -> str:
        """The first line of the card's docstring."""
        lines = (cls.__doc__ or "").strip().splitlines()
        return lines[0] if lines else ""

    @classmethod
    def dimension_problem(cls, num_classes: int, dim: int) -> str | None:
        """Why this method cannot exist at (``num_classes``, ``dim``), e.g. a simplex below d = K-1: the
        head raises it as ``NotApplicable`` and a dry run counts the cell n/a. None: it can."""
        return None


METHODS: Registry[type[MethodCard]] = Registry("method")


def register_method(name: str, *, head: str) -> Callable[[type[MethodCard]], type[MethodCard]]:
    """Class decorator: register a card under ``name`` (timm's register_model idea), naming the head
    (``module.Class``) that computes it."""

    def add(cls: type[MethodCard]) -> type[MethodCard]:
        cls.name, cls.head = name, head
        return METHODS.register(name)(cls)

    return add


def check_loss_family(method: str, family: str) -> None:
    """Reject a loss family the method does not know, naming the allowed ones."""
    if family not in LOSS_FAMILIES:
        raise UserError(f"method '{method}': unknown loss family {family!r}; allowed: {', '.join(LOSS_FAMILIES)}")


def check_options(name: str, options: Mapping[str, Any], where: str = "") -> None:
    """A UserError naming the first option ``name`` does not document, and the allowed ones, or the first
    value outside its option's range (``MethodCard.option_ranges``) and that range."""
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


def prototype_request(method: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(generator, its parameters) method ``method``'s fixed prototypes come from with ``options``, or
    None for a head without fixed prototypes."""
    from protobench.prototypes import get_generator

    kind = METHODS.get(method).prototype_kind
    if kind is None:
        return None
    resolved = resolved_options(method, options)
    kind = resolved.get("prototype_kind", kind)  # a head whose generator is an option (dl2pa's ablations)
    accepted = get_generator(kind).defaults
    return kind, {k: v for k, v in resolved.items() if k in accepted}
