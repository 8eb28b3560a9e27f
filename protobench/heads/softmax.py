"""PSC's head: a learned linear layer and cross-entropy (card: protobench/methods/softmax.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from protobench.heads.base import Method
from protobench.methods.card import MethodCard
from protobench.methods.softmax import SoftmaxCard


class Softmax(Method):
    """Linear(d, K) with bias on the embedding; softmax cross-entropy; prediction = argmax of logits."""

    card: ClassVar[type[MethodCard]] = SoftmaxCard

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
