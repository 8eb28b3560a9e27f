"""PSC: the parametric softmax classifier (a learned linear layer and cross-entropy)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protobench.methods.base import UNIT_INTERVAL, Method, register_method


@register_method("softmax")
class Softmax(Method):
    """Linear(d, K) with bias on the embedding; softmax cross-entropy; prediction = argmax of logits."""

    defaults = {"label_smoothing": 0.0}
    option_ranges = {"label_smoothing": UNIT_INTERVAL}

    def __init__(self, num_classes: int, dim: int, *, label_smoothing: float, **base: Any) -> None:
        super().__init__(num_classes, dim, **base)
        self.label_smoothing = label_smoothing
        self.classifier = nn.Linear(dim, num_classes)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(h)

    def class_anchors(self) -> torch.Tensor:
        return self.classifier.weight

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.scores(h), y, label_smoothing=self.label_smoothing)
