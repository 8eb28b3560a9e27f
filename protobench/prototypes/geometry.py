"""The geometry of a prototype set: nearest-neighbour angles, uniformity, distance to the simplex."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from protobench.core.errors import UserError
from protobench.prototypes.uniform import uniform_energy


@dataclass(frozen=True)
class PrototypeMetrics:
    """Geometry of a prototype set (all angles in degrees)."""

    max_cosine: float
    min_angle_deg: float
    mean_nn_angle_deg: float
    uniformity_energy: float
    max_abs_cosine: float
    simplex_bound: float
    simplex_gap: float

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict (JSON-friendly)."""
        return asdict(self)


def metrics(P: torch.Tensor | np.ndarray) -> PrototypeMetrics:
    """Geometry of a K x d prototype set (rows are normalised first; computed in float64)."""
    X = torch.as_tensor(np.asarray(P) if not isinstance(P, torch.Tensor) else P).detach()
    X = torch.nn.functional.normalize(X.to("cpu", torch.float64), dim=1)
    K = X.shape[0]
    if X.ndim != 2 or K < 2:
        raise UserError(f"prototype metrics need a K x d array with K >= 2, got shape {tuple(X.shape)}")
    cos = (X @ X.T).clamp(-1.0, 1.0)
    off = ~torch.eye(K, dtype=torch.bool)
    cos_off = cos.masked_fill(~off, -math.inf)
    nn_cos = cos_off.max(dim=1).values
    max_cos = float(nn_cos.max())
    bound = -1.0 / (K - 1)
    return PrototypeMetrics(
        max_cosine=max_cos,
        min_angle_deg=math.degrees(math.acos(max_cos)),
        mean_nn_angle_deg=float(torch.rad2deg(torch.arccos(nn_cos)).mean()),
        uniformity_energy=float(uniform_energy(cos, 2.0)),
        max_abs_cosine=float(cos.abs().masked_fill(~off, 0.0).max()),
        simplex_bound=bound,
        simplex_gap=max_cos - bound,
    )
