"""Long-tailed training sets (Cao et al., NeurIPS 2019, LDAM-DRW) and the per-group accuracies.

Class 0 is the head. The imbalance *ratio* is n_max / n_min (200, 100, 50, 10), i.e. the
inverse of the imbalance *factor* (0.005, 0.01, 0.02, 0.1) used in the papers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from protobench.core.errors import UserError
from protobench.data.base import ImageSplit

if TYPE_CHECKING:
    import torch

PROFILES = ("exp", "step")


def long_tail_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exp") -> list[int]:
    """Training images kept per class.

    exp: n_i = int(n_max * (1/ratio)^(i/(K-1))); step: the first half of the classes keep n_max,
    the rest int(n_max / ratio). Both as in Cao et al.'s ``get_img_num_per_cls``.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown long-tail profile '{profile}'; allowed: {', '.join(PROFILES)}")
    if ratio < 1:
        raise UserError(f"imbalance ratio must be >= 1 (n_max / n_min, e.g. 100 for factor 0.01), got {ratio}")
    if num_classes < 1 or n_max < 1:
        raise UserError(f"long-tail counts need n_max >= 1 and a class, got {n_max}, {num_classes} classes")
    # Cao et al. multiply by the factor (e.g. 0.01), not divide by the ratio: the same floats, same ints.
    factor = 1.0 / ratio
    if profile == "step":
        head = num_classes // 2
        return [n_max] * head + [int(n_max * factor)] * (num_classes - head)
    if num_classes == 1:
        return [n_max]
    return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def long_tail_subsample(
    split: ImageSplit,
    num_classes: int,
    ratio: float,
    profile: str,
    seed: int,
    *,
    n_max: int | None = None,
) -> ImageSplit:
    """Keep ``long_tail_counts`` images of each class of ``split``, in their original order.

    ``n_max`` defaults to the smallest class size, so every class can supply its count (CIFAR: 5,000
    or 500). Which images a class keeps is drawn with a torch.Generator seeded with ``seed``.
    """
    import torch

    labels = split.labels.cpu()
    available = torch.bincount(labels, minlength=num_classes)
    if n_max is None:
        n_max = int(available.min())
    counts = long_tail_counts(n_max, num_classes, ratio, profile)
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c, n in enumerate(counts):
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < n:
            raise UserError(f"long-tail class {c} needs {n} images but the split has {members.numel()}")
        kept.append(members[torch.randperm(members.numel(), generator=generator)[:n]])
    index = torch.sort(torch.cat(kept)).values
    return split.subset(index.to(split.labels.device))


def shot_groups(train_counts: Sequence[int] | torch.Tensor) -> dict[str, list[int]]:
    """Classes by training images: many (> 100), medium (20..100), few (< 20)."""
    counts = [int(c) for c in train_counts]
    return {
        "many": [c for c, n in enumerate(counts) if n > 100],
        "medium": [c for c, n in enumerate(counts) if 20 <= n <= 100],
        "few": [c for c, n in enumerate(counts) if n < 20],
    }


def index_range_groups(num_classes: int) -> dict[str, list[int]]:
    """The authors' fixed index ranges: CIFAR-100 0-35 / 36-70 / 71-99, CIFAR-10 0-2 / 3-6 / 7-9.

    Boundaries at floor(0.36 K) and floor(0.71 K) reproduce both, and give the same proportions for
    any other K.
    """
    first, second = num_classes * 36 // 100, num_classes * 71 // 100
    return {
        "many": list(range(0, first)),
        "medium": list(range(first, second)),
        "few": list(range(second, num_classes)),
    }


def group_accuracy(per_class_acc: Sequence[float], groups: dict[str, list[int]]) -> dict[str, float]:
    """Mean of the per-class accuracies within each group (NaN for an empty group)."""
    out = {}
    for name, classes in groups.items():
        values = [float(per_class_acc[c]) for c in classes]
        out[name] = sum(values) / len(values) if values else math.nan
    return out
