"""Riemannian Barzilai-Borwein descent on a product of unit spheres (the rows of a K x d matrix).

The three optimised generators share this solver: a gradient step in the tangent spaces, then every
row renormalised, with Barzilai-Borwein step sizes and a non-monotone (Zhang-Hager) Armijo line
search. BB adapts the step to the local curvature, so it reaches the optimum in a few hundred
full-batch steps where plain SGD with a fixed learning rate needs thousands, and it stops on a
convergence test instead of a fixed step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: ``fg(X)``: the objective f(X) (a 0-dim tensor) and its Euclidean gradient (K x d).
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def random_unit_rows(K: int, d: int, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded Gaussian rows, normalised: uniform on the sphere. Drawn on CPU so every device agrees."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(K, d, generator=gen, dtype=torch.float64)
    return torch.nn.functional.normalize(X, dim=1).to(device)


def tangent(G: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Project a Euclidean gradient onto the tangent spaces of the row spheres."""
    return G - (G * X).sum(dim=1, keepdim=True) * X


@dataclass
class SolveResult:
    """Where :func:`sphere_minimise` stopped: the rows, f there, steps taken, and the last step size."""

    X: torch.Tensor
    f: float
    iterations: int
    converged: bool
    alpha: float


def sphere_minimise(
    fg: Objective,
    X: torch.Tensor,
    *,
    max_iter: int,
    gtol: float,
    ftol: float | None = None,
    stop: Callable[[torch.Tensor], bool] | None = None,
    alpha: float | None = None,
) -> SolveResult:
    """Minimise f over matrices with unit rows: projected gradient steps with BB step sizes.

    ``fg(X)`` returns (f, Euclidean gradient). Converged when the RMS per-row Riemannian gradient
    drops below ``gtol``, when f stops changing (relative ``ftol``, default a few ulps of the dtype,
    10 steps in a row), or when
    ``stop(X)`` says so. ``alpha`` is the first step size (a previous run's ``alpha`` continues it).
    """
    K = X.shape[0]
    X = torch.nn.functional.normalize(X, dim=1)  # e.g. after a cast from float32
    if ftol is None:
        ftol = 4 * torch.finfo(X.dtype).eps
    f, G = fg(X)
    R = tangent(G, X)
    rnorm = float(R.norm())
    if stop is not None and stop(X):
        return SolveResult(X, float(f), 0, True, alpha or 0.0)
    if rnorm / math.sqrt(K) <= gtol:
        return SolveResult(X, float(f), 0, True, alpha or 0.0)
    if alpha is None:
        # First step moves the rows by about 0.05 radians (RMS); BB takes over after that.
        alpha = 0.05 * math.sqrt(K) / rnorm
    # Zhang-Hager non-monotone Armijo reference value: lets BB's occasional uphill steps through.
    C, Q, eta = float(f), 1.0, 0.85
    flat = 0
    for it in range(1, max_iter + 1):
        rr = rnorm * rnorm
        # Near the optimum the decrease asked for drops below the rounding error of f itself;
        # the slack (a few ulps of f) keeps the line search from stalling there.
        slack = 64 * torch.finfo(X.dtype).eps * abs(C)
        for _ in range(30):
            Xn = torch.nn.functional.normalize(X - alpha * R, dim=1)
            fn, Gn = fg(Xn)
            if float(fn) <= C - 1e-4 * alpha * rr + slack:
                break
            alpha *= 0.3
        else:
            # No step decreases f at this precision: as converged as it can get.
            return SolveResult(X, float(f), it - 1, True, alpha)
        Rn = tangent(Gn, Xn)
        S, Y = Xn - X, Rn - R
        sy = abs(float((S * Y).sum()))
        ss, yy = float((S * S).sum()), float((Y * Y).sum())
        if sy > 0:
            # Alternate the two BB formulas: long and short steps, more robust than either alone.
            alpha = ss / sy if it % 2 else sy / yy
        else:
            alpha *= 2.0
        alpha = min(max(alpha, 1e-20), 1e20)
        f_old = float(f)
        X, f, R = Xn, fn, Rn
        rnorm = math.sqrt(float((R * R).sum()))
        Qn = eta * Q + 1.0
        C = (eta * Q * C + float(f)) / Qn
        Q = Qn
        if stop is not None and stop(X):
            return SolveResult(X, float(f), it, True, alpha)
        if rnorm / math.sqrt(K) <= gtol:
            return SolveResult(X, float(f), it, True, alpha)
        flat = flat + 1 if abs(float(f) - f_old) <= ftol * max(1.0, abs(f_old)) else 0
        if flat >= 10:
            return SolveResult(X, float(f), it, True, alpha)
    return SolveResult(X, float(f), max_iter, False, alpha)
