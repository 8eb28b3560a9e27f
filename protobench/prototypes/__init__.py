"""Fixed class prototypes on the unit hypersphere: K unit vectors in R^d (the rows of a K x d array).

Five generators, one module each; importing this package registers them all:

- ``uniform``: DL2PA's Gaussian-potential energy (CVPR 2024),
  L(P) = log(mean_{i<j} exp(-t ||p_i - p_j||^2)).
- ``hpn``: Hyperspherical Prototype Networks (NeurIPS 2019), minimise mean_i max_{j != i} cos(p_i, p_j).
- ``etf``: the regular simplex, an equiangular tight frame (Yang et al., NeurIPS 2022), in closed
  form; needs d >= K - 1.
- ``ebv``: Equiangular Basis Vectors (CVPR 2023), near-orthogonal: max |cos| <= tau.
- ``random``: seeded random unit vectors, not spread at all (the ablation baseline).

The optimised ones share one solver (``solver``: Riemannian Barzilai-Borwein descent on the product
of spheres). Results are cached on disk (``cache``), one file per (generator, K, d, seed,
parameters); ``geometry`` measures a set.

Importing this package does not import torch: the registry (names, defaults, summaries, versions,
dimension checks) is all a read-only command needs. :func:`generate`, :func:`generate_with_info`,
:func:`cache_path`, :func:`metrics` and :class:`PrototypeMetrics` come from their torch modules on
first use (``__getattr__`` below), as do the submodules that need torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Importing registers; the order of these lines is the registry's order (the paper's first).
# isort: off
from protobench.prototypes import uniform  # noqa: F401
from protobench.prototypes import hpn  # noqa: F401
from protobench.prototypes import etf  # noqa: F401
from protobench.prototypes import ebv  # noqa: F401
from protobench.prototypes import random_unit  # noqa: F401

# isort: on
from protobench.prototypes.base import (
    GENERATOR_REGISTRY,
    GenerationInfo,
    Generator,
    generator_names,
    get_generator,
    register_generator,
    resolve_params,
)
from protobench.prototypes.etf import etf_dimension_problem

if TYPE_CHECKING:
    from protobench.prototypes.cache import cache_path
    from protobench.prototypes.generation import generate, generate_with_info
    from protobench.prototypes.geometry import PrototypeMetrics, metrics

#: The registered generator names, for callers that need a list (CLI choices, parametrised tests).
GENERATORS: tuple[str, ...] = tuple(generator_names())

#: The names that need torch, each with the submodule that defines it (imported on first use).
LAZY: dict[str, str] = {
    "cache_path": "protobench.prototypes.cache",
    "generate": "protobench.prototypes.generation",
    "generate_with_info": "protobench.prototypes.generation",
    "PrototypeMetrics": "protobench.prototypes.geometry",
    "metrics": "protobench.prototypes.geometry",
}
#: The submodules this package used to import eagerly, so ``prototypes.cache`` and the like still resolve.
SUBMODULES = ("cache", "degeneracy", "generation", "geometry", "solver")

__all__ = [
    "GENERATORS",
    "GENERATOR_REGISTRY",
    "GenerationInfo",
    "Generator",
    "PrototypeMetrics",
    "cache_path",
    "etf_dimension_problem",
    "generate",
    "generate_with_info",
    "generator_names",
    "get_generator",
    "metrics",
    "register_generator",
    "resolve_params",
]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        value = globals()[name] = getattr(importlib.import_module(LAZY[name]), name)
        return value
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY, *SUBMODULES})
