"""The generator registry: each generator's name, tunable parameters with defaults, and builder.

A generator module registers its builder with :func:`register_generator`; :func:`resolve_params`
checks a request against the registered defaults, so a parameter is stated in one place only. Nothing
here imports torch: the registry (names, defaults, summaries, versions, dimension checks) serves the
read-only commands without it, and a builder imports torch when it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from protobench.core.errors import UserError
from protobench.core.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass
class GenerationInfo:
    """How a prototype set was obtained (stored next to it in the cache)."""

    kind: str
    num_classes: int
    dim: int
    seed: int
    params: dict[str, Any]
    iterations: int = 0
    converged: bool = True
    seconds: float = 0.0
    device: str = "cpu"
    objective: float | None = None
    notes: list[str] = field(default_factory=list)
    cached: bool = False


#: ``build(K, d, seed, device, params)``: K x d rows (any float dtype, on ``device``) and the info.
Builder = Callable[[int, int, int, "torch.device", dict[str, Any]], tuple["torch.Tensor", GenerationInfo]]

#: ``problem(K, d)``: why the generator cannot produce K vectors in R^d, or None when it can.
DimensionCheck = Callable[[int, int], str | None]


@dataclass(frozen=True)
class Generator:
    """A registered prototype generator."""

    name: str
    #: Every tunable parameter with its default (read-only); anything else passed in is an error.
    defaults: Mapping[str, Any]
    build: Builder
    #: One line for listings.
    summary: str = ""
    #: The (K, d) settings the generator cannot serve, if there are any.
    dimension_problem: DimensionCheck | None = None
    #: The numerics version of the generator: bump it with any change that moves a set it builds, and
    #: re-make the fingerprint in the same commit (docs/engine.md, "Numerics versions"); it is part of
    #: the cache key, so cached sets of an older version are not reused.
    version: int = 1


GENERATOR_REGISTRY: Registry[Generator] = Registry("prototype generator")


def register_generator(
    name: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    summary: str = "",
    dimension_problem: DimensionCheck | None = None,
    version: int = 1,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder as the generator ``name`` (at numerics ``version``); returns the
    builder unchanged."""

    def add(build: Builder) -> Builder:
        entry = Generator(name, MappingProxyType(dict(defaults or {})), build, summary, dimension_problem, version)
        GENERATOR_REGISTRY.register(name)(entry)
        return build

    return add


def get_generator(name: str) -> Generator:
    """The generator called ``name``; a one-line UserError with the allowed names if there is none."""
    return GENERATOR_REGISTRY.get(name)


def generator_names() -> list[str]:
    """Registered generator names, in registration order."""
    return GENERATOR_REGISTRY.names()


def resolve_params(kind: str, K: int, d: int, seed: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a request and return the generator's parameters, defaults filled in (the cache key)."""
    generator = get_generator(kind)
    for name, value in (("number of classes K", K), ("dimension d", d), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(f"{name} must be an integer, got {value!r}")
    if K < 2:
        raise UserError(f"need at least 2 classes (K={K})")
    if d < 2:
        raise UserError(f"need dimension d >= 2 (d={d})")
    if seed < 0:
        raise UserError(f"seed must be >= 0 (seed={seed})")
    defaults = generator.defaults
    # None means "not set" (the CLI passes unset flags as None): the generator's default stands.
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise UserError(f"unknown parameter(s) {', '.join(unknown)} for {kind!r} prototypes (allowed: {allowed})")
    resolved = {**defaults, **given}
    if "t" in resolved:
        resolved["t"] = _positive_float("t", resolved["t"])
    if resolved.get("tau") is not None:
        resolved["tau"] = _positive_float("tau", resolved["tau"])
        if resolved["tau"] >= 1:
            raise UserError(f"tau must be in (0, 1), got {resolved['tau']}")
    if "max_iter" in resolved:
        mi = resolved["max_iter"]
        if isinstance(mi, bool) or not isinstance(mi, (int, np.integer)) or mi < 1:
            raise UserError(f"max_iter must be a positive integer, got {mi!r}")
        resolved["max_iter"] = int(mi)
    if generator.dimension_problem is not None:
        problem = generator.dimension_problem(K, d)
        if problem is not None:
            raise UserError(problem)
    return resolved


def _positive_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise UserError(f"{name} must be a positive number, got {value!r}")
    return out
