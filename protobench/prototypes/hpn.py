"""``hpn``: Hyperspherical Prototype Networks (Mettes et al., NeurIPS 2019).

Minimise mean_i max_{j != i} cos(p_i, p_j), the cosine of each prototype to its nearest neighbour.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from protobench.prototypes.base import GenerationInfo, register_generator

if TYPE_CHECKING:
    import torch

#: Sharpness schedule of the smooth surrogate: (1/beta) logsumexp_j(beta cos_ij) -> max_j cos_ij.
HPN_BETAS: tuple[float, ...] = (5.0, 15.0, 50.0, 150.0, 500.0, 1500.0, 5000.0, 15000.0)


@register_generator(
    "hpn",
    defaults={"max_iter": 8000},
    summary="HPN: minimise the mean nearest-neighbour cosine",
)
def build_hpn(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    """Minimise the mean nearest-neighbour cosine through a sharpening smooth surrogate."""
    import torch

    from protobench.prototypes.degeneracy import min_angle_deg
    from protobench.prototypes.solver import random_unit_rows, sphere_minimise

    eye = torch.eye(K, dtype=torch.bool, device=dev)
    X = random_unit_rows(K, d, seed, dev)
    total, converged = 0, True
    # HPN's objective mean_i max_j cos_ij is not smooth (the arg-max neighbour jumps), so it is
    # approached by a smooth surrogate, (1/beta) logsumexp_j(beta cos_ij), with beta raised stage
    # by stage. Each stage starts from the previous optimum; at beta = 15000 the surrogate differs
    # from the max by at most log(K)/beta, far below the angles anyone reads.
    for beta in HPN_BETAS:

        def fg(X: torch.Tensor, beta: float = beta) -> tuple[torch.Tensor, torch.Tensor]:
            logits = (beta * (X @ X.T)).masked_fill(eye, -math.inf)
            lse = torch.logsumexp(logits, dim=1)
            W = torch.exp(logits - lse[:, None])  # row-wise softmax over neighbours
            # f = sum_i lse_i / beta; cos_ij appears in rows i and j.
            return lse.sum() / beta, (W + W.T) @ X

        # An equal share of the step budget per stage: the sharp late stages are ill-conditioned
        # when many neighbours tie (large K), and must not starve the rest.
        budget = max(params["max_iter"] // len(HPN_BETAS), 1)
        res = sphere_minimise(fg, X, max_iter=budget, gtol=1e-9)
        total += res.iterations
        if min_angle_deg(res.X) < min_angle_deg(X) / 2:
            # The objective's stacked optima: in few dimensions, piling several prototypes onto one
            # point lowers mean_i max_j cos_ij (K=10, d=2: five stacked on a hexagon's vertex give
            # 0.75 against the decagon's 0.81). That is not a set HPN's prototypes are meant to be
            # (docs/methods.md, 13.2), so the continuation stops at the last stage before the merge.
            merged = f"stage beta={beta:g} merged prototypes; kept the set before it"
            break
        X = res.X
        converged = res.converged  # what counts is the last, sharpest stage
    else:
        merged = ""
    cos = (X @ X.T).masked_fill(eye, -math.inf)
    info = GenerationInfo("hpn", K, d, seed, dict(params), total, converged)
    info.objective = float(cos.max(dim=1).values.mean())
    if merged:
        info.notes.append(merged)
    if not converged:
        info.notes.append(f"not converged after {total} steps (max_iter)")
    return X, info
