"""``ebv``: Equiangular Basis Vectors (Shen et al., CVPR 2023), near-orthogonal: max |cos| <= tau.

When tau is out of reach (d < K, below the Welch bound or just too tight) max |cos| itself is
minimised instead and tau loosened to what that reaches, with a note saying so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from protobench.prototypes.base import GenerationInfo, register_generator

if TYPE_CHECKING:
    import torch

#: The tau asked for when none is given: orthogonal to within float32 noise.
EBV_TAU_ORTHOGONAL = 0.002


def welch_bound(K: int, d: int) -> float:
    """Lower bound on max |cos| of K unit vectors in R^d (Welch; zero when d >= K)."""
    return math.sqrt((K - d) / (d * (K - 1))) if d < K else 0.0


@register_generator(
    "ebv",
    defaults={"tau": None, "max_iter": 3000},
    summary=f"EBV: max |cos| <= tau (default {EBV_TAU_ORTHOGONAL}, loosened to what is reachable when d < K)",
)
def build_ebv(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    """EBV's hinge loss down to tau; failing that, minimise max |cos| and loosen tau to it."""
    import torch

    from protobench.prototypes.solver import random_unit_rows, sphere_minimise

    eye = torch.eye(K, dtype=torch.bool, device=dev)
    requested = params["tau"] if params["tau"] is not None else EBV_TAU_ORTHOGONAL
    max_iter = params["max_iter"]
    X = random_unit_rows(K, d, seed, dev)

    def max_abs(X: torch.Tensor) -> float:
        return float((X @ X.T).abs().masked_fill(eye, 0.0).max())

    def hinge(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # EBV's loss sum relu(|cos| - tau), squared so it is smooth, with a 10% margin so that the
        # solver gets to max |cos| <= tau in finitely many steps instead of creeping up to it.
        cos = (X @ X.T).masked_fill(eye, 0.0)
        excess = torch.relu(cos.abs() - 0.9 * requested)
        return (excess * excess).sum(), 4.0 * (excess * torch.sign(cos)) @ X

    total = 0
    reached = max_abs(X)
    # Below the Welch bound no such set exists: do not even try the requested tau there.
    if requested >= welch_bound(K, d):
        res = sphere_minimise(
            hinge, X, max_iter=min(2000, max_iter), gtol=1e-12, stop=lambda X: max_abs(X) <= requested
        )
        X, total, reached = res.X, res.iterations, max_abs(X)
    tau = requested
    if reached > requested:
        # The requested tau is out of reach (d < K): minimise max |cos| itself instead, through
        # the smooth surrogate (1/beta) logsumexp_{i != j}(beta cos_ij^2) with beta raised stage by
        # stage, and loosen tau to what that reaches. beta is scaled by the current max cos^2 so
        # the schedule suits any K and d.
        # float32 is precise enough for a bound read to 4 digits and several times faster on CPU.
        X = X.to(torch.float32)
        stages = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
        budget = max((max_iter - total) // len(stages), 1)
        for sharp in stages:
            beta = sharp / max_abs(X) ** 2

            def fg(X: torch.Tensor, beta: float = beta) -> tuple[torch.Tensor, torch.Tensor]:
                cos = X @ X.T
                logits = (beta * cos * cos).masked_fill(eye, -math.inf)
                lse = torch.logsumexp(logits.flatten(), dim=0)
                W = torch.exp(logits - lse)  # softmax over ordered pairs, symmetric
                # Scaled by K so that the per-row gradient (and gtol) does not shrink with K.
                return K * lse / beta, (4.0 * K) * (W * cos) @ X

            res = sphere_minimise(fg, X, max_iter=budget, gtol=1e-9)
            X, total = res.X, total + res.iterations
        X = torch.nn.functional.normalize(X.to(torch.float64), dim=1)
        reached = max_abs(X)
        # A hair above what was reached, so the float32 set the caller gets also satisfies it.
        tau = max(requested, reached * (1 + 1e-6))
    info = GenerationInfo("ebv", K, d, seed, dict(params), total, reached <= tau)
    info.objective = reached
    info.params["tau_used"] = tau
    if tau > requested:
        info.notes.append(f"tau {requested:g} unreachable for K={K} > d={d}; loosened to max |cos| = {tau:.4g}")
    return X, info
