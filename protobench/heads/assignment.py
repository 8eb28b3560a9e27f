"""Label-to-prototype assignment by bipartite matching (DL2PA, Saadabadi et al., CVPR 2024;
docs/methods.md, "Label-to-prototype matching").

A = argmax over bijections of sum_c cos(q_c, p_A(c)), solved exactly with the Hungarian algorithm
(scipy's linear_sum_assignment). It runs on the CPU once per epoch: about 35 ms for K=1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


@dataclass
class AssignmentResult:
    """A matching: ``assignment[c]`` is the prototype index of class c."""

    assignment: torch.Tensor
    changed: int
    total_cosine: float


def _cosine_matrix(representatives: torch.Tensor, prototypes: torch.Tensor) -> np.ndarray:
    """K x K cosines in float64 on the CPU (rows normalised; inputs may live on any device)."""
    if representatives.ndim != 2 or prototypes.ndim != 2:
        raise ValueError("representatives and prototypes must be 2-D (K x d)")
    if representatives.shape != prototypes.shape:
        raise ValueError(
            f"need as many representatives as prototypes, of the same dimension: "
            f"{tuple(representatives.shape)} vs {tuple(prototypes.shape)}"
        )
    q = torch.nn.functional.normalize(representatives.detach().to("cpu", torch.float64), dim=1)
    p = torch.nn.functional.normalize(prototypes.detach().to("cpu", torch.float64), dim=1)
    return (q @ p.T).numpy()


def _solve(cos: np.ndarray) -> tuple[torch.Tensor, float]:
    # Rows are classes, columns prototypes; minimising -cos maximises the total cosine. For a
    # square matrix the returned rows are 0..K-1 in order, so cols is the assignment itself.
    rows, cols = linear_sum_assignment(-cos)
    assignment = np.empty(cos.shape[0], dtype=np.int64)
    assignment[rows] = cols
    return torch.from_numpy(assignment), float(cos[rows, cols].sum())


def hungarian(representatives: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """LongTensor of length K, ``assignment[c]`` = prototype of class c, maximising sum_c cos(q_c, p_.)."""
    assignment, _ = _solve(_cosine_matrix(representatives, prototypes))
    return assignment


def match(
    representatives: torch.Tensor, prototypes: torch.Tensor, previous: torch.Tensor | None = None
) -> AssignmentResult:
    """Hungarian matching; ``changed`` counts classes whose prototype differs from ``previous``."""
    assignment, total = _solve(_cosine_matrix(representatives, prototypes))
    changed = 0
    if previous is not None:
        prev = torch.as_tensor(previous).detach().to("cpu", torch.int64).flatten()
        if prev.shape != assignment.shape:
            raise ValueError(f"previous assignment has {prev.numel()} entries, expected {assignment.numel()}")
        changed = int((prev != assignment).sum())
    return AssignmentResult(assignment=assignment, changed=changed, total_cosine=total)
