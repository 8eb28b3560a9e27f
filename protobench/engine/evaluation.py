"""Evaluation of a cell's learner on one split: top-1 accuracy, overall and per class (docs/engine.md,
"One cell: `train_cell`", step 5). Part of the engine's numerics (``versions.ENGINE_VERSION``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from protobench.core.device import at_least_fp32
from protobench.data.base import BatchLoader
from protobench.heads import Method


@dataclass
class Evaluation:
    """Accuracy of one split, overall and per class (in %)."""

    accuracy: float
    per_class: list[float]


@torch.no_grad()
def evaluate(
    backbone: nn.Module,
    method: Method,
    loader: BatchLoader,
    num_classes: int,
    autocast: Callable[[], Any],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    where: str = "split test",
) -> Evaluation:
    """Top-1 accuracy of ``method.predict`` over ``loader``, overall and per class; ``reduce`` sums the
    counts over data-parallel ranks, each of which evaluated its part of the split (``Collective.sum_``).
    Scores that are NaN or infinite raise ``FloatingPointError`` naming the head and ``where``: their
    argmax is an arbitrary class, which would record a chance-level accuracy as if it were one."""
    backbone.eval()
    method.eval()
    device, dtype = next(backbone.parameters()).device, next(backbone.parameters()).dtype
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    bad = torch.zeros(2, device=device)  # NaN scores, infinite scores: counted on the device, read once
    for images, labels in loader:
        with autocast():
            z = backbone(images.to(dtype))  # a no-op but for an fp64 learner
        h = method(at_least_fp32(z))
        predictions = method.predict(h)
        scores = method.scores(h)  # predict may skip them (a shortcut to the same argmax): check them here
        bad[0] += torch.isnan(scores).sum()
        bad[1] += torch.isinf(scores).sum()
        total += torch.bincount(labels, minlength=num_classes)
        correct += torch.bincount(labels[predictions == labels], minlength=num_classes)
    if reduce is not None:
        reduce(correct)
        reduce(total)
        reduce(bad)
    nan, inf = bad.tolist()
    if nan or inf:
        name = method.method_name or type(method).__name__
        raise FloatingPointError(f"{name} scores are {'NaN' if nan else 'infinite'} at evaluation ({where})")
    per_class = (100 * correct / total.clamp(min=1)).tolist()
    return Evaluation(float(100 * correct.sum() / total.sum().clamp(min=1)), per_class)
