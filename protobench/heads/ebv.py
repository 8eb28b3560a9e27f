"""EBV: Equiangular Basis Vectors (Shen et al., CVPR 2023) as a fixed cosine classifier.

docs/methods.md, "ebv": K near-orthogonal unit vectors fixed before training; logits are cosines
divided by a temperature, trained with label-smoothed cross-entropy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from protobench.core.device import at_least_fp32
from protobench.heads.base import Method
from protobench.heads.losses import unit_rows
from protobench.methods.card import MethodCard, check_loss_family
from protobench.methods.ebv import EBVCard
from protobench.prototypes import generate


class EBV(Method):
    """Fixed EBV vectors (buffer ``prototypes``, K x d); scores cos(z, v_c) / temperature.

    Options (the card's ``defaults``): ``temperature``, ``label_smoothing`` and the generator's ``tau``.
    """

    card: ClassVar[type[MethodCard]] = EBVCard

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        temperature: float,
        label_smoothing: float,
        tau: float | None,
        **base: Any,
    ) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family("ebv", self.loss_family)
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.tau = None if tau is None else float(tau)
        self.register_buffer("prototypes", generate("ebv", num_classes, dim, self.seed, tau=self.tau))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return (unit_rows(h) @ self.prototypes.T) / self.temperature

    def class_anchors(self) -> torch.Tensor:
        return self.prototypes

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        # A positive per-row factor does not change the argmax: no normalisation needed.
        return (at_least_fp32(h) @ self.prototypes.T).argmax(dim=1)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.scores(h), y, label_smoothing=self.label_smoothing)
