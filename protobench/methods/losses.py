"""Losses shared by the prototype heads (method.md sections 2.4 and 3.2), plus small shared helpers.

Everything here is pure tensor arithmetic with fixed shapes: no ``.item()``, no data-dependent
shapes (``torch.unique``, boolean indexing) and no ``torch.bincount`` (whose CUDA kernel reads the
largest label back to the host to size its output), so the training step never waits on the GPU
and stays ``torch.compile``-friendly.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from protobench.errors import UserError

#: Guard for divisions by a feature norm; a feature of exactly zero length gets a finite loss.
_EPS = 1e-8

#: The two training regimes of method.md: HPN's squared cosine on balanced data, DR loss on long-tailed.
LOSS_FAMILIES: tuple[str, ...] = ("balanced", "long-tailed")


def check_loss_family(method: str, family: str) -> None:
    """Reject a loss family the method does not know, naming the allowed ones."""
    if family not in LOSS_FAMILIES:
        allowed = ", ".join(LOSS_FAMILIES)
        raise UserError(f"method '{method}': unknown loss family {family!r}; allowed: {allowed}")


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


def class_sums(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-label sums of the rows of ``x`` (``num_classes`` x d); labels absent from the batch get 0."""
    out = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
    return out.index_add_(0, y, x)


def squared_cosine_loss(h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """HPN's mapping loss: sum_i (1 - cos(h_i, t_i))^2 over the batch.

    A sum, not a mean: the published learning rates (SGD lr 0.01 at batch 128) were tuned for it.
    """
    cos = F.cosine_similarity(h.float(), targets.float(), dim=1, eps=_EPS)
    return (1.0 - cos).pow(2).sum()


def dot_regression_loss(h: torch.Tensor, w_all: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Yang et al.'s dot-regression loss with their per-batch target scaling (method.md 3.2).

    ``h`` (N x d) are the head features (already L2-normalised BatchNorm outputs in every caller),
    ``w_all`` (K x d) the fixed class targets, ``y`` (N) the labels. Each target is rescaled
    w_c <- sqrt(gamma / n_c) w_c, n_c = count of class c in the batch and gamma = batch size /
    number of distinct classes present, so rare classes in the batch get longer targets and pull
    harder. Loss = 0.5 * mean_i (h_i . w_{y_i} - ||w_{y_i}|| ||h_i||)^2 / ||h_i||, norms detached:
    only the pull term, minimised when h_i points along w_{y_i}.
    """
    num_classes = w_all.shape[0]
    # float32 throughout: under bf16 autocast counts above 256 would not even be exact integers.
    h = h.float()
    counts = class_counts(y, num_classes)
    # Distinct classes as a tensor (no torch.unique: data-dependent shape and a host sync).
    gamma = y.shape[0] / (counts > 0).sum().float()
    # Every label indexed below is present, so its count is >= 1; clamp only guards absent classes.
    scale = torch.sqrt(gamma / counts.clamp(min=1.0))
    w = w_all.float()[y] * scale[y].unsqueeze(1)
    dot = (h * w).sum(dim=1)
    with torch.no_grad():
        w_len = w.norm(dim=1)
        h_len = h.norm(dim=1).clamp(min=_EPS)
    return 0.5 * ((dot - w_len * h_len).pow(2) / h_len).mean()
