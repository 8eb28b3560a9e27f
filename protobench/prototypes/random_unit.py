"""``random``: K unit vectors drawn uniformly on the sphere, nothing optimised (an ablation's baseline).

The draw is the uniform generator's starting point at the same seed, so ``random`` vs ``uniform`` asks
what the optimisation of the prototypes' spread buys (docs/ablations.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protobench.prototypes.base import GenerationInfo, register_generator

if TYPE_CHECKING:
    import torch


@register_generator("random", defaults={}, summary="seeded random unit vectors, not spread (ablation baseline)")
def build_random(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    """Gaussian rows normalised to unit length, drawn on the CPU from ``seed``."""
    from protobench.prototypes.solver import random_unit_rows

    return random_unit_rows(K, d, seed, dev), GenerationInfo("random", K, d, seed, dict(params), 0, True)
