"""``etf``: the regular simplex, an equiangular tight frame (Yang et al., NeurIPS 2022), in closed form.

K unit vectors with pairwise cosine -1/(K-1) exist only in d >= K-1 dimensions;
:func:`etf_dimension_problem` is that rule, for this generator and for the ETF method alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from protobench.prototypes.base import GenerationInfo, register_generator

if TYPE_CHECKING:
    import torch


def etf_dimension_problem(num_classes: int, dim: int) -> str | None:
    """Why no simplex ETF of ``num_classes`` vectors fits in R^``dim`` (d < K-1), or None if it does."""
    if dim < num_classes - 1:
        return f"ETF needs d >= K-1 (K={num_classes}, d={dim})"
    return None


@register_generator(
    "etf",
    defaults={},
    summary="regular simplex (ETF) in closed form, randomly rotated; needs d >= K-1",
    dimension_problem=etf_dimension_problem,
)
def build_etf(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    """The simplex in R^(K-1), turned into R^d by a seeded random rotation."""
    import torch

    # Centred standard basis vectors e_i - 1/K span the (K-1)-dim subspace orthogonal to 1; their
    # coordinates in an orthonormal basis B of that subspace are the simplex in R^(K-1).
    centred = torch.eye(K, dtype=torch.float64) - 1.0 / K
    basis = torch.linalg.qr(centred[:, : K - 1]).Q  # K x (K-1), orthonormal columns spanning 1-perp
    simplex = math.sqrt(K / (K - 1)) * centred @ basis  # K x (K-1), unit rows, cos = -1/(K-1)
    # A seeded random rotation into R^d, so the set is not axis-aligned (the rows of a random
    # orthogonal matrix); the Haar measure comes from QR of a Gaussian with sign correction.
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    rotation = q * torch.sign(torch.diagonal(r))
    X = simplex @ rotation[:, : K - 1].T if d > K - 1 else simplex @ rotation
    info = GenerationInfo("etf", K, d, seed, dict(params), 0, True)
    return X.to(dev), info
