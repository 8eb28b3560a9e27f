"""``uniform``: DL2PA's prototypes (CVPR 2024), the minimisers of a Gaussian-potential energy.

L(P) = log(mean_{i<j} exp(-t ||p_i - p_j||^2)) over K unit rows; for K <= d + 1 the optimum is the
regular simplex.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from protobench.prototypes.base import GenerationInfo, register_generator

if TYPE_CHECKING:
    import torch


def uniform_energy(cos: torch.Tensor, t: float) -> torch.Tensor:
    """log(mean_{i<j} exp(-t ||p_i - p_j||^2)) from the cosine matrix of unit rows."""
    import torch

    K = cos.shape[0]
    logits = (-t * (2.0 - 2.0 * cos)).masked_fill(torch.eye(K, dtype=torch.bool, device=cos.device), -math.inf)
    # Each unordered pair appears twice among the K(K-1) ordered ones; the mean is unchanged.
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(K * (K - 1))


@register_generator(
    "uniform",
    defaults={"t": 2.0, "max_iter": 100000},
    summary="DL2PA: minimise the Gaussian-potential energy (t sets its sharpness)",
)
def build_uniform(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    """Minimise the energy: float32 descent, then a float64 polish to a tight gradient."""
    import torch

    from protobench.prototypes.solver import random_unit_rows, sphere_minimise

    t = params["t"]
    eye = torch.eye(K, dtype=torch.bool, device=dev)

    def fg(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = X @ X.T
        logits = (-t * (2.0 - 2.0 * cos)).masked_fill(eye, -math.inf)
        lse = torch.logsumexp(logits.flatten(), dim=0)
        W = torch.exp(logits - lse)  # softmax over ordered pairs, symmetric
        # dL/dp_i = 4t sum_j W_ij p_j. Scaled by K so the per-row gradient is O(1) whatever K is,
        # which makes gtol mean the same thing for every K.
        return K * (lse - math.log(K * (K - 1))), (4.0 * t * K) * (W @ X)

    # max_iter was 20000; raised because at K=100, d=3, t=2 the energy is nearly flat along many
    # directions and the float64 polish needs ~47000 steps to reach gtol. The path is unchanged, so
    # every set that converged under the old cap is bit-identical; the new cap also changes the
    # cache key, so sets cut off at the old cap are recomputed rather than reused.
    # Most of the descent in float32 (several times faster on CPU, the matmuls dominate), until f
    # stops changing at float32 precision; then a float64 polish from there to a tight gradient.
    X = random_unit_rows(K, d, seed, dev)
    max_iter = params["max_iter"]
    rough = sphere_minimise(fg, X.to(torch.float32), max_iter=max_iter, gtol=1e-5)
    budget = max(max_iter - rough.iterations, 1)
    res = sphere_minimise(fg, rough.X.to(torch.float64), max_iter=budget, gtol=1e-8, alpha=rough.alpha)
    steps = rough.iterations + res.iterations
    info = GenerationInfo("uniform", K, d, seed, dict(params), steps, res.converged)
    info.objective = res.f / K
    if not res.converged:
        info.notes.append(f"not converged after {steps} steps (max_iter)")
    return res.X, info
