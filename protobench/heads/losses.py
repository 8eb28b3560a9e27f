"""Losses shared by the prototype heads (docs/methods.md, "Losses"), plus small shared helpers.

Everything here is pure tensor arithmetic with fixed shapes: no ``.item()``, no data-dependent
shapes (``torch.unique``, boolean indexing) and no ``torch.bincount`` (whose CUDA kernel reads the
largest label back to the host to size its output), so the training step never waits on the GPU
and stays ``torch.compile``-friendly.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from protobench.core.device import at_least_fp32

#: Guard for divisions by a feature norm; a feature of exactly zero length gets a finite loss.
_EPS = 1e-8


def seeded_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose of one run.

    Derived from (purpose, seed) rather than ``seed`` itself: the prototype generators start from
    ``randn`` with the bare seed, and DL2PA's representatives drawn from that same stream would
    start next to their prototypes, so the "random" initial assignment would not be random.
    """
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def random_unit_rows(rows: int, dim: int, seed: int, purpose: str) -> torch.Tensor:
    """``rows`` x ``dim`` float32 unit vectors, uniform on the sphere, reproducible per (seed, purpose)."""
    x = torch.randn(rows, dim, generator=seeded_generator(seed, purpose))
    return F.normalize(x, dim=1)


def class_counts(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """How many rows of the batch carry each label (length ``num_classes``), on ``y``'s device, no sync."""
    counts = torch.zeros(num_classes, dtype=dtype, device=y.device)
    return counts.index_add_(0, y, torch.ones(y.shape[0], dtype=dtype, device=y.device))


def squared_cosine_loss(h: torch.Tensor, unit_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HPN's mapping loss sum_i (1 - cos(h_i, t_i))^2 over the batch, and the unit rows of ``h``.

    ``unit_targets`` are unit vectors (prototypes) and constants (no gradient reaches them). A sum,
    not a mean: the published learning rates (SGD lr 0.01 at batch 128) were tuned for it. The unit
    rows come back (detached) for the caller's bookkeeping, so it does not normalise twice.
    """
    return _SquaredCosine.apply(at_least_fp32(h), unit_targets)


class _SquaredCosine(torch.autograd.Function):
    """The squared-cosine loss with its gradient written out: a handful of operations per step
    where autograd would record about fifteen (the normalisation's backward is most of them).

    d/dh_i (1 - cos_i)^2 = -2 (1 - cos_i) (t_i - cos_i u_i) / ||h_i||, u_i = h_i / ||h_i||.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, unit_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit, length = _unit_and_length(h)
        cos = (unit * unit_targets).sum(dim=1, keepdim=True)
        residual = 1.0 - cos
        ctx.save_for_backward(unit, unit_targets, length, cos, residual)
        ctx.mark_non_differentiable(unit)
        return residual.square().sum(), unit

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_unit: torch.Tensor) -> tuple[torch.Tensor, None]:
        unit, unit_targets, length, cos, residual = ctx.saved_tensors
        direction = torch.addcmul(unit_targets, cos, unit, value=-1.0)  # t - cos u
        return direction * (residual * (-2.0 * grad_loss) / length), None


def _unit_and_length(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` scaled to length 1, and their lengths (N x 1, at least eps)."""
    length = x.norm(dim=1, keepdim=True).clamp_min(_EPS)
    return x / length, length


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (as float32) scaled to length 1; a zero row stays zero. Differentiable."""
    return _UnitRows.apply(at_least_fp32(x))


class _UnitRows(torch.autograd.Function):
    """x / max(||x||, eps) row-wise with its gradient written out: (g - u (u . g)) / ||x||, four
    operations where autograd records about ten for F.normalize (rows shorter than eps, i.e. zero
    rows in practice, get the same projected formula instead of the clamp's g / eps)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        unit, length = _unit_and_length(x)
        ctx.save_for_backward(unit, length)
        return unit

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        unit, length = ctx.saved_tensors
        along = (unit * grad).sum(dim=1, keepdim=True)
        return torch.addcmul(grad, unit, along, value=-1.0) / length


def dot_regression_loss(h: torch.Tensor, unit_targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Yang et al.'s dot-regression loss with their per-batch target scaling (NeurIPS 2022; docs/methods.md).

    ``h`` (N x d) are the head features (L2-normalised BatchNorm outputs in every caller),
    ``unit_targets`` (K x d) the fixed unit class vectors (ETF or prototypes), ``y`` (N) the labels.
    Each target is rescaled w_c = s_c u_c with s_c = sqrt(gamma / n_c), n_c = count of class c in
    the batch and gamma = batch size / number of distinct classes present, so rare classes in the
    batch get longer targets and pull harder. Loss = 0.5 * mean_i (h_i . w_i - ||w_i|| ||h_i||)^2 /
    ||h_i||, norms detached: only the pull term, minimised when h_i points along w_i. With unit u_c
    this is 0.5 * mean_i s_i^2 (h_i . u_i - ||h_i||)^2 / ||h_i||, which is what is computed.
    """
    num_classes = unit_targets.shape[0]
    # float32 throughout: under bf16 autocast counts above 256 would not even be exact integers.
    h = at_least_fp32(h)
    counts = class_counts(y, num_classes)
    # gamma / n_c; distinct classes counted as a tensor (no torch.unique: a host sync). Every label
    # indexed below is present, so its count is >= 1; the clamp only guards absent classes.
    scale_sq = (y.shape[0] / (counts > 0).sum()) / counts.clamp(min=1.0)
    return _DotRegression.apply(h, unit_targets[y], scale_sq[y])


class _DotRegression(torch.autograd.Function):
    """0.5 * mean_i s2_i (h_i . u_i - ||h_i||)^2 / ||h_i|| with ||h_i|| a constant (detached), as the
    loss defines, so the gradient is simply (s2_i (h_i . u_i - ||h_i||) / ||h_i|| / N) u_i: written
    out, it is two operations where autograd records about ten."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, unit_targets: torch.Tensor, scale_sq: torch.Tensor) -> torch.Tensor:
        length = h.norm(dim=1).clamp_min(_EPS)
        residual = (h * unit_targets).sum(dim=1) - length
        weighted = scale_sq * residual / length
        ctx.save_for_backward(unit_targets, weighted)
        return torch.dot(weighted, residual) * (0.5 / h.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        unit_targets, weighted = ctx.saved_tensors
        return unit_targets * (weighted * (grad / weighted.shape[0])).unsqueeze(1), None, None
