"""Fixed class prototypes on the unit hypersphere: K unit vectors in R^d (the rows of a K x d array).

Four generators (method.md sections 2.1 and 3):

- ``uniform``: DL2PA's Gaussian-potential energy  L(P) = log(mean_{i<j} exp(-t ||p_i - p_j||^2)).
- ``hpn``: Hyperspherical Prototype Networks, minimise mean_i max_{j != i} cos(p_i, p_j).
- ``etf``: the regular simplex (equiangular tight frame) in closed form; needs d >= K - 1.
- ``ebv``: Equiangular Basis Vectors, near-orthogonal: max |cos| <= tau.

The three optimised generators share one solver: Riemannian gradient descent on the product of
spheres (step, then renormalise every row) with Barzilai-Borwein step sizes and a non-monotone
Armijo line search. BB adapts the step to the local curvature, so it reaches the optimum in a few
hundred full-batch steps where plain SGD with a fixed learning rate needs thousands, and it stops
on a convergence test instead of a fixed step count.

Results are cached on disk (``cache_dir()/"prototypes"``), one file per (generator, K, d, seed,
parameters), so a benchmark grid computes each set once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protobench.errors import UserError
from protobench.paths import atomic_write, cache_dir

log = logging.getLogger(__name__)

GENERATORS: tuple[str, ...] = ("uniform", "hpn", "etf", "ebv")

# Bump when an algorithm changes, so stale cache files are not reused.
_CACHE_VERSION = 1

# Defaults of each generator's tunable parameters; anything else passed in **params is an error.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "uniform": {"t": 2.0, "max_iter": 20000},
    "hpn": {"max_iter": 8000},
    "etf": {},
    "ebv": {"tau": None, "max_iter": 3000},
}

# Sharpness schedule of HPN's smooth surrogate: (1/beta) logsumexp_j(beta cos_ij) -> max_j cos_ij.
_HPN_BETAS: tuple[float, ...] = (5.0, 15.0, 50.0, 150.0, 500.0, 1500.0, 5000.0, 15000.0)
_EBV_TAU_ORTHOGONAL = 0.002


@dataclass
class GenerationInfo:
    """How a prototype set was obtained (stored next to it in the cache)."""

    kind: str
    num_classes: int
    dim: int
    seed: int
    params: dict[str, Any]
    iterations: int = 0
    converged: bool = True
    seconds: float = 0.0
    device: str = "cpu"
    objective: float | None = None
    notes: list[str] = field(default_factory=list)
    cached: bool = False


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


# ----------------------------------------------------------------------------------------------
# Public entry points


def generate(
    kind: str,
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    use_cache: bool = True,
    device: str = "auto",
    **params: Any,
) -> torch.Tensor:
    """K x d float32 CPU tensor of unit prototypes from generator ``kind``, deterministic per seed."""
    prototypes, _ = generate_with_info(kind, num_classes, dim, seed, use_cache=use_cache, device=device, **params)
    return prototypes


def generate_with_info(
    kind: str,
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    use_cache: bool = True,
    device: str = "auto",
    **params: Any,
) -> tuple[torch.Tensor, GenerationInfo]:
    """Like :func:`generate`, also returning how the set was obtained (iterations, loosened tau...)."""
    resolved = _validate(kind, num_classes, dim, seed, params)
    path = _cache_path(kind, num_classes, dim, seed, resolved)
    if use_cache and path.exists():
        loaded = _load_cached(path)
        if loaded is not None:
            return loaded

    dev = _resolve_device(device)
    start = time.perf_counter()
    builder = _BUILDERS[kind]
    prototypes64, info = builder(num_classes, dim, seed, dev, resolved)
    info.seconds = time.perf_counter() - start
    info.device = str(dev)
    for note in info.notes:
        log.warning("%s prototypes K=%d d=%d: %s", kind, num_classes, dim, note)
    prototypes = torch.nn.functional.normalize(prototypes64.detach().cpu(), dim=1).to(torch.float32)
    if use_cache:
        _save_cached(path, prototypes, info)
    return prototypes, info


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
        uniformity_energy=float(_uniform_energy(cos, 2.0)),
        max_abs_cosine=float(cos.abs().masked_fill(~off, 0.0).max()),
        simplex_bound=bound,
        simplex_gap=max_cos - bound,
    )


# ----------------------------------------------------------------------------------------------
# Validation, device, cache


def _validate(kind: str, K: int, d: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    if kind not in GENERATORS:
        raise UserError(f"unknown prototype generator {kind!r}; choose one of {', '.join(GENERATORS)}")
    for name, value in (("number of classes K", K), ("dimension d", d), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(f"{name} must be an integer, got {value!r}")
    if K < 2:
        raise UserError(f"need at least 2 classes (K={K})")
    if d < 2:
        raise UserError(f"need dimension d >= 2 (d={d})")
    if seed < 0:
        raise UserError(f"seed must be >= 0 (seed={seed})")
    defaults = _DEFAULTS[kind]
    # None means "not set" (the CLI passes unset flags as None): the generator's default stands.
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise UserError(f"unknown parameter(s) {', '.join(unknown)} for {kind!r} prototypes (allowed: {allowed})")
    resolved = {**defaults, **given}
    if "t" in resolved:
        resolved["t"] = _positive_float("t", resolved["t"])
    if resolved.get("tau") is not None:
        resolved["tau"] = _positive_float("tau", resolved["tau"])
        if resolved["tau"] >= 1:
            raise UserError(f"tau must be in (0, 1), got {resolved['tau']}")
    if "max_iter" in resolved:
        mi = resolved["max_iter"]
        if isinstance(mi, bool) or not isinstance(mi, (int, np.integer)) or mi < 1:
            raise UserError(f"max_iter must be a positive integer, got {mi!r}")
        resolved["max_iter"] = int(mi)
    if kind == "etf" and d < K - 1:
        raise UserError(f"ETF needs d >= K-1 (K={K}, d={d})")
    return resolved


def _positive_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise UserError(f"{name} must be a positive number, got {value!r}")
    return out


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return dev


def _cache_path(kind: str, K: int, d: int, seed: int, params: dict[str, Any]) -> Path:
    key = json.dumps({"v": _CACHE_VERSION, "params": params}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "prototypes" / f"{kind}_K{K}_d{d}_s{seed}_{digest}.npz"


def _load_cached(path: Path) -> tuple[torch.Tensor, GenerationInfo] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            array = data["prototypes"]
            info = GenerationInfo(**json.loads(str(data["info"])))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        # A damaged cache file is not the user's fault: recompute and overwrite it.
        log.warning("ignoring unreadable prototype cache file %s", path)
        return None
    info.cached = True
    return torch.from_numpy(array.astype(np.float32)), info


def _save_cached(path: Path, prototypes: torch.Tensor, info: GenerationInfo) -> None:
    try:
        # Atomic: concurrent runs see either no file or a complete one.
        atomic_write(
            path, lambda f: np.savez(f, prototypes=prototypes.numpy(), info=np.array(json.dumps(asdict(info))))
        )
    except OSError as exc:
        # The cache is an optimisation; a read-only cache dir must not fail the run.
        log.warning("could not write prototype cache %s: %s", path, exc)


# ----------------------------------------------------------------------------------------------
# The shared solver


def _init_rows(K: int, d: int, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded Gaussian rows, normalised: uniform on the sphere. Drawn on CPU so every device agrees."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(K, d, generator=gen, dtype=torch.float64)
    return torch.nn.functional.normalize(X, dim=1).to(device)


def _tangent(G: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Project a Euclidean gradient onto the tangent spaces of the row spheres."""
    return G - (G * X).sum(dim=1, keepdim=True) * X


@dataclass
class _SolveResult:
    X: torch.Tensor
    f: float
    iterations: int
    converged: bool
    alpha: float


def _sphere_minimise(
    fg: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    X: torch.Tensor,
    *,
    max_iter: int,
    gtol: float,
    ftol: float | None = None,
    stop: Callable[[torch.Tensor], bool] | None = None,
    alpha: float | None = None,
) -> _SolveResult:
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
    R = _tangent(G, X)
    rnorm = float(R.norm())
    if stop is not None and stop(X):
        return _SolveResult(X, float(f), 0, True, alpha or 0.0)
    if rnorm / math.sqrt(K) <= gtol:
        return _SolveResult(X, float(f), 0, True, alpha or 0.0)
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
            return _SolveResult(X, float(f), it - 1, True, alpha)
        Rn = _tangent(Gn, Xn)
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
            return _SolveResult(X, float(f), it, True, alpha)
        if rnorm / math.sqrt(K) <= gtol:
            return _SolveResult(X, float(f), it, True, alpha)
        flat = flat + 1 if abs(float(f) - f_old) <= ftol * max(1.0, abs(f_old)) else 0
        if flat >= 10:
            return _SolveResult(X, float(f), it, True, alpha)
    return _SolveResult(X, float(f), max_iter, False, alpha)


# ----------------------------------------------------------------------------------------------
# Generators


def _uniform_energy(cos: torch.Tensor, t: float) -> torch.Tensor:
    """log(mean_{i<j} exp(-t ||p_i - p_j||^2)) from the cosine matrix of unit rows."""
    K = cos.shape[0]
    logits = (-t * (2.0 - 2.0 * cos)).masked_fill(torch.eye(K, dtype=torch.bool, device=cos.device), -math.inf)
    # Each unordered pair appears twice among the K(K-1) ordered ones; the mean is unchanged.
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(K * (K - 1))


def _build_uniform(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
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

    # Most of the descent in float32 (several times faster on CPU, the matmuls dominate), until f
    # stops changing at float32 precision; then a float64 polish from there to a tight gradient.
    X = _init_rows(K, d, seed, dev)
    max_iter = params["max_iter"]
    rough = _sphere_minimise(fg, X.to(torch.float32), max_iter=max_iter, gtol=1e-5)
    budget = max(max_iter - rough.iterations, 1)
    res = _sphere_minimise(fg, rough.X.to(torch.float64), max_iter=budget, gtol=1e-8, alpha=rough.alpha)
    steps = rough.iterations + res.iterations
    info = GenerationInfo("uniform", K, d, seed, dict(params), steps, res.converged)
    info.objective = res.f / K
    if not res.converged:
        info.notes.append(f"not converged after {steps} steps (max_iter)")
    return res.X, info


def _build_hpn(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    eye = torch.eye(K, dtype=torch.bool, device=dev)
    X = _init_rows(K, d, seed, dev)
    total, converged = 0, True
    # HPN's objective mean_i max_j cos_ij is not smooth (the arg-max neighbour jumps), so it is
    # approached by a smooth surrogate, (1/beta) logsumexp_j(beta cos_ij), with beta raised stage
    # by stage. Each stage starts from the previous optimum; at beta = 15000 the surrogate differs
    # from the max by at most log(K)/beta, far below the angles anyone reads.
    for beta in _HPN_BETAS:

        def fg(X: torch.Tensor, beta: float = beta) -> tuple[torch.Tensor, torch.Tensor]:
            logits = (beta * (X @ X.T)).masked_fill(eye, -math.inf)
            lse = torch.logsumexp(logits, dim=1)
            W = torch.exp(logits - lse[:, None])  # row-wise softmax over neighbours
            # f = sum_i lse_i / beta; cos_ij appears in rows i and j.
            return lse.sum() / beta, (W + W.T) @ X

        # An equal share of the step budget per stage: the sharp late stages are ill-conditioned
        # when many neighbours tie (large K), and must not starve the rest.
        budget = max(params["max_iter"] // len(_HPN_BETAS), 1)
        res = _sphere_minimise(fg, X, max_iter=budget, gtol=1e-9)
        X, total = res.X, total + res.iterations
        converged = res.converged  # what counts is the last, sharpest stage
    cos = (X @ X.T).masked_fill(eye, -math.inf)
    info = GenerationInfo("hpn", K, d, seed, dict(params), total, converged)
    info.objective = float(cos.max(dim=1).values.mean())
    if not converged:
        info.notes.append(f"not converged after {total} steps (max_iter)")
    return X, info


def _build_etf(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
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


def _welch_bound(K: int, d: int) -> float:
    """Lower bound on max |cos| of K unit vectors in R^d (Welch; zero when d >= K)."""
    return math.sqrt((K - d) / (d * (K - 1))) if d < K else 0.0


def _build_ebv(
    K: int, d: int, seed: int, dev: torch.device, params: dict[str, Any]
) -> tuple[torch.Tensor, GenerationInfo]:
    eye = torch.eye(K, dtype=torch.bool, device=dev)
    requested = params["tau"] if params["tau"] is not None else _EBV_TAU_ORTHOGONAL
    max_iter = params["max_iter"]
    X = _init_rows(K, d, seed, dev)

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
    if requested >= _welch_bound(K, d):
        res = _sphere_minimise(
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

            res = _sphere_minimise(fg, X, max_iter=budget, gtol=1e-9)
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


_BUILDERS: dict[str, Callable[..., tuple[torch.Tensor, GenerationInfo]]] = {
    "uniform": _build_uniform,
    "hpn": _build_hpn,
    "etf": _build_etf,
    "ebv": _build_ebv,
}
