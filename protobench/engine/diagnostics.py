"""What the trained features look like: neural-collapse and alignment measures, calibration, and a
small sample of embeddings, computed once on the test set after the last epoch (docs/diagnostics.md).

Everything is accumulated batch by batch (class sums, one d x d second moment, calibration bins),
so the cost is one forward pass over the test set and memory does not grow with its size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from protobench.core.device import at_least_fp32
from protobench.heads import Method

#: Calibration bins of the expected calibration error (equal-width over confidence).
ECE_BINS = 15
#: Test embeddings kept per cell for the circle/sphere plots, at d <= EMBEDDING_MAX_DIM.
EMBEDDING_SAMPLE, EMBEDDING_MAX_DIM = 2000, 3


@dataclass
class FeatureReport:
    """The diagnostics of one trained cell and, at small d, a sample of its test embeddings."""

    values: dict[str, float | None]
    embeddings: dict[str, Any] | None


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def pairwise_cosines(rows: torch.Tensor) -> torch.Tensor:
    """The cosines of every pair i < j of ``rows`` (a flat vector)."""
    gram = unit(rows) @ unit(rows).T
    i, j = torch.triu_indices(rows.shape[0], rows.shape[0], offset=1)
    return gram[i, j]


def nc1(second_moment: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> float:
    """Within-class over between-class variability, tr(S_W S_B^+) / K (Papyan et al. 2020's NC1)."""
    present = counts > 0
    means = sums[present] / counts[present, None]
    n = counts.sum()
    # S_W = (sum_i h_i h_i^T - sum_c n_c mu_c mu_c^T) / N ; S_B = mean_c (mu_c - mu_G)(mu_c - mu_G)^T
    within = (second_moment - (means.T * counts[present]) @ means) / n
    centred = means - means.mean(dim=0)
    between = centred.T @ centred / means.shape[0]
    return float(torch.trace(within @ torch.linalg.pinv(between, hermitian=True)) / means.shape[0])


def expected_calibration_error(confidence_sum: torch.Tensor, correct: torch.Tensor, counts: torch.Tensor) -> float:
    """sum_b (n_b / N) |accuracy_b - confidence_b| over the bins."""
    total = counts.sum().clamp(min=1)
    return float(((correct - confidence_sum).abs() / total).sum())


@dataclass
class FeatureSums:
    """What one pass over the test split accumulates for ``feature_report``: per-class feature sums and
    counts, the second moment, the calibration bins and (at d <= EMBEDDING_MAX_DIM) a sample of features."""

    sums: torch.Tensor
    counts: torch.Tensor
    second: torch.Tensor
    bins: torch.Tensor  # count, confidence sum, correct: one row each, ECE_BINS columns
    kept_h: list[torch.Tensor] = field(default_factory=list)
    kept_y: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def empty(cls, num_classes: int, dim: int, device: torch.device) -> FeatureSums:
        """All sums zero (float64, on ``device``), nothing kept."""

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device, dtype=torch.float64)

        return cls(zeros(num_classes, dim), zeros(num_classes), zeros(dim, dim), zeros(3, ECE_BINS))

    def add(self, h: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> None:
        """Add one batch: head features ``h``, their ``labels`` and the head's ``scores`` of them."""
        h64 = h.double()
        self.sums.index_add_(0, labels, h64)
        self.counts += torch.bincount(labels, minlength=self.counts.shape[0]).double()
        self.second += h64.T @ h64
        confidence, predicted = torch.softmax(scores, dim=1).max(dim=1)
        index = (confidence * ECE_BINS).long().clamp(max=ECE_BINS - 1)
        self.bins[0] += torch.bincount(index, minlength=ECE_BINS).double()
        self.bins[1].index_add_(0, index, confidence.double())
        self.bins[2].index_add_(0, index, (predicted == labels).double())
        kept = sum(len(y) for y in self.kept_y)
        if h.shape[1] <= EMBEDDING_MAX_DIM and kept < EMBEDDING_SAMPLE:
            take = min(EMBEDDING_SAMPLE - kept, labels.shape[0])
            self.kept_h.append(h[:take].cpu())
            self.kept_y.append(labels[:take].cpu())


@torch.no_grad()
def feature_report(
    backbone: nn.Module, method: Method, loader: Any, num_classes: int, autocast: Callable[[], Any]
) -> FeatureReport:
    """Diagnostics of the head features ``method(backbone(x))`` on ``loader`` (the test split):

    - ``nc1``: tr(S_W S_B^+)/K of the features (smaller: tighter classes);
    - ``class_mean_anchor_cosine``: mean over classes of cos(class mean, the class's anchor), the anchor
      being its assigned prototype, classifier row or centroid (``Method.class_anchors``);
    - ``class_mean_cosine_mean`` / ``_std``: cosines between the class means, over all pairs;
    - ``anchor_min_angle_degrees``: the smallest angle between two anchors;
    - ``ece``: expected calibration error (15 bins) of softmax(scores): the head's scores with its own
      temperature (EBV, DNC); cosine and dot-product heads have none, so theirs is softmax of the raw scores.
    """
    backbone.eval()
    method.eval()
    device, dtype = next(backbone.parameters()).device, next(backbone.parameters()).dtype
    found = FeatureSums.empty(num_classes, method.dim, device)
    for images, labels in loader:
        with autocast():
            z = backbone(images.to(dtype))  # a no-op but for an fp64 learner
        h = at_least_fp32(method(at_least_fp32(z)))
        found.add(h, labels, at_least_fp32(method.scores(h)))
    anchors = method.class_anchors()
    anchors = anchors.detach().double() if anchors is not None else None
    embeddings = None
    if found.kept_h:
        embeddings = {
            "features": torch.cat(found.kept_h).numpy(),
            "labels": torch.cat(found.kept_y).numpy(),
            "anchors": anchors.float().cpu().numpy() if anchors is not None else None,
        }
    return FeatureReport(geometry(found, anchors), embeddings)


def geometry(found: FeatureSums, anchors: torch.Tensor | None) -> dict[str, float | None]:
    """``feature_report``'s values from the pass's sums and the head's class anchors (float64, or None)."""
    means = found.sums / found.counts.clamp(min=1)[:, None]
    present = found.counts > 0
    values: dict[str, float | None] = {
        "nc1": nc1(found.second, found.sums, found.counts),
        "class_mean_cosine_mean": None,
        "class_mean_cosine_std": None,
        "class_mean_anchor_cosine": None,
        "anchor_min_angle_degrees": None,
        "ece": expected_calibration_error(found.bins[1], found.bins[2], found.bins[0]),
    }
    if int(present.sum()) > 1:
        cosines = pairwise_cosines(means[present])
        values["class_mean_cosine_mean"] = float(cosines.mean())
        values["class_mean_cosine_std"] = float(cosines.std()) if cosines.numel() > 1 else 0.0
    if anchors is not None:
        alignment = (unit(means[present]) * unit(anchors[present])).sum(dim=1)
        values["class_mean_anchor_cosine"] = float(alignment.mean())
        largest = float(pairwise_cosines(anchors).max().clamp(-1.0, 1.0))
        values["anchor_min_angle_degrees"] = math.degrees(math.acos(largest))
    return values
