"""ETF's head: a fixed simplex equiangular tight frame with the dot-regression loss (card:
protobench/methods/etf.py).

Yang et al., NeurIPS 2022 (docs/methods.md, "etf"). The K class vectors form a regular simplex
(pairwise cosine -1/(K-1)), which exists only when d >= K-1: below that the method is reported
as not applicable rather than faked.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from protobench.core.device import at_least_fp32
from protobench.heads.base import Method
from protobench.heads.losses import dot_regression_loss, unit_rows
from protobench.methods.card import MethodCard, NotApplicable, check_loss_family
from protobench.methods.etf import ETFCard
from protobench.prototypes import generate


class ETF(Method):
    """Fixed simplex ETF M (buffer ``prototypes``, K x d, never trained).

    Features h = L2norm(BatchNorm1d(z)); scores h M^T; loss = dot-regression with per-batch
    target scaling, whatever the loss family (it is the method's own loss). No hyperparameters.
    """

    card: ClassVar[type[MethodCard]] = ETFCard

    def __init__(self, num_classes: int, dim: int, **base: Any) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family("etf", self.loss_family)
        problem = self.card.dimension_problem(num_classes, dim)
        if problem is not None:
            raise NotApplicable(problem)
        self.bn = nn.BatchNorm1d(dim)
        self.register_buffer("prototypes", generate("etf", num_classes, dim, self.seed))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return unit_rows(self.bn(z))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return at_least_fp32(h) @ self.prototypes.T

    def class_anchors(self) -> torch.Tensor:
        return self.prototypes

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return dot_regression_loss(h, self.prototypes, y)
