"""Degenerate prototype sets: a smallest pairwise angle far below what HPN reaches for the same K, d.

DL2PA's energy (Saadabadi et al., CVPR 2024) at its default t = 2 is soft: for many classes in few
dimensions it leaves pairs of prototypes close together. HPN (Mettes et al. 2019) maximises the
nearest-neighbour angle directly, so its set is the yardstick (docs/methods.md).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

#: A set is flagged when its smallest angle is below this fraction of HPN's.
DEGENERATE_FRACTION = 0.5


def min_angle_deg(P: torch.Tensor | np.ndarray) -> float:
    """The smallest pairwise angle (degrees) between the rows of P (normalised, float64, on P's device)."""
    X = torch.nn.functional.normalize(torch.as_tensor(P, dtype=torch.float64), dim=1)
    cos = (X @ X.T).fill_diagonal_(-1.0).clamp(-1.0, 1.0)
    return math.degrees(math.acos(float(cos.max())))


@functools.cache
def hpn_reference_angle(K: int, d: int) -> float:
    """The smallest angle of HPN's seed-0 set for K, d (generated once, then from the disk cache)."""
    from protobench.prototypes.generation import generate

    return min_angle_deg(generate("hpn", K, d, 0, device="cpu"))


def degeneracy_warning(P: torch.Tensor | np.ndarray, label: str) -> str | None:
    """One line (without the ``warning:`` prefix) when P is degenerate, else None."""
    K, d = P.shape
    found, reference = min_angle_deg(P), hpn_reference_angle(int(K), int(d))
    if found >= DEGENERATE_FRACTION * reference:
        return None
    return (
        f"{label} K={K} d={d}: smallest pairwise angle {found:.2f} deg is below half of the HPN "
        f"objective's {reference:.2f} deg for the same K and d (degenerate prototype set)"
    )
