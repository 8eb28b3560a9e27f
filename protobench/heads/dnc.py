"""DNC: Deep Nearest Centroids (Wang et al., ICLR 2023), classes summarised by sub-centroids.

docs/methods.md, "dnc". Each class keeps m sub-centroids of its training features. Every step,
the class's batch features are split evenly over its sub-centroids by Sinkhorn-Knopp (balanced
clustering, so no sub-centroid starves) and each sub-centroid moves by momentum towards the mean
direction of its share; no gradient reaches the centroids. The backbone is trained with
cross-entropy over the class scores max_j cos(z, c_{k,j}) / temperature plus a compactness term.
The Sinkhorn step and the losses follow the authors' ProtoSeg/DNC code (distributed_sinkhorn with
epsilon 0.05, momentum 0.999, the (1 - cos)^2 "pixel-prototype distance" term weighted 0.01), except
the number of Sinkhorn iterations (see the class docstring).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from protobench.core.device import at_least_fp32
from protobench.heads.base import Method, StepMemo
from protobench.heads.losses import random_unit_rows, unit_rows
from protobench.methods.card import MethodCard, check_loss_family
from protobench.methods.dnc import DNCCard


class DNC(Method):
    """Sub-centroid classifier; buffer ``centroids`` is (K*m) x d, rows k*m .. k*m+m-1 belong to class k.

    Options: the card's (protobench/methods/dnc.py). Centroids start as seeded random unit vectors.
    """

    card: ClassVar[type[MethodCard]] = DNCCard

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        sub_centroids: int,
        temperature: float,
        momentum: float,
        compactness_weight: float,
        sinkhorn_iterations: int,
        sinkhorn_epsilon: float,
        **base: Any,
    ) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family("dnc", self.loss_family)
        self.sub_centroids = sub_centroids
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.compactness_weight = float(compactness_weight)
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        centroids = random_unit_rows(num_classes * sub_centroids, dim, self.seed, "dnc-centroids")
        self.register_buffer("centroids", centroids)
        # Column j of the K*m score table belongs to class j // m (derived, not checkpointed).
        self.register_buffer("slot_class", torch.arange(num_classes * sub_centroids) // sub_centroids, persistent=False)

    def _cosines(self, h: torch.Tensor) -> torch.Tensor:
        """N x (K*m) cosines between the features and every sub-centroid (class k: columns k*m..k*m+m-1)."""
        return unit_rows(h) @ self.centroids.T

    @torch.no_grad()
    def sinkhorn_plan(self, cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N x (K*m) balanced soft assignment of each row to its own class's m sub-centroids.

        Sinkhorn-Knopp for all classes at once, in scaling-vector form: the kernel is
        exp((cos - 1) / epsilon), zero outside each row's own class, and the plan is
        diag(u) kernel diag(v) with v making each column's mass n_k / m (balanced within class k)
        and u making each row's mass 1. Starting from u = 1 this is the authors' alternation of
        column and row normalisations, at two matrix-vector products per iteration.
        """
        return self._sinkhorn(cos, y)[0]

    @torch.no_grad()
    def sinkhorn_slots(self, cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hard balanced assignment: each row's sub-centroid slot (k*m + j, j in 0..m-1) under the plan."""
        return self._sinkhorn(cos, y)[1]

    def _sinkhorn(self, cos: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(plan, slots) of ``sinkhorn_plan`` / ``sinkhorn_slots``; fixed shapes, no host sync."""
        own_class = y.unsqueeze(1) == self.slot_class
        # cos <= 1, so shifting by 1 keeps exp() <= 1; a common factor, which the scalings cancel.
        kernel = torch.exp((at_least_fp32(cos) - 1.0) / self.sinkhorn_epsilon) * own_class
        # A floor far below any kernel entry at the default epsilon (>= exp(-2 / 0.05) = 4e-18) keeps
        # every row and column mass positive (absent classes have empty columns) without a clamp per
        # iteration; it moves no mass measurably.
        floored = kernel + 1e-30
        target = own_class.sum(dim=0) / self.sub_centroids  # n_k / m for each sub-centroid of class k
        v = target / floored.sum(dim=0)
        u = (floored @ v).reciprocal()
        for _ in range(self.sinkhorn_iterations - 1):
            v = target / (u @ floored)
            u = (floored @ v).reciprocal()
        weighted = kernel * v  # u scales whole rows: it does not change a row's argmax
        # Restricted to the row's own class: with a tiny epsilon a far feature's kernel row can
        # underflow to all zeros, and an unrestricted argmax would then name class 0's slot.
        slots = torch.where(own_class, weighted, -1.0).argmax(dim=1)
        return u.unsqueeze(1) * weighted, slots

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self._cosines(h).view(h.shape[0], self.num_classes, self.sub_centroids).amax(dim=2) / self.temperature

    def class_anchors(self) -> torch.Tensor:
        """Each class's sub-centroids averaged (one vector a class; the centroid itself when m = 1)."""
        return self.centroids.view(self.num_classes, self.sub_centroids, self.dim).mean(dim=1)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        # Positive per-row factors do not change the argmax: no normalisation needed.
        table = at_least_fp32(h) @ self.centroids.T
        return table.view(h.shape[0], self.num_classes, self.sub_centroids).amax(dim=2).argmax(dim=1)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.step_loss(h, y)[0]

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        """The loss, and the unit features and balanced clustering it computed (after_step reuses them)."""
        unit = unit_rows(h)
        cos = unit @ self.centroids.T
        best = cos.view(h.shape[0], self.num_classes, self.sub_centroids).amax(dim=2)
        ce = F.cross_entropy(best / self.temperature, y)
        slots = self.sinkhorn_slots(cos.detach(), y)
        nearest = cos.gather(1, slots.unsqueeze(1))
        # after_step sees the same features, labels and centroids: it reuses this clustering.
        return ce + self.compactness_weight * (1.0 - nearest).pow(2).mean(), (unit.detach(), slots)

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor, memo: StepMemo = ()) -> None:
        """Momentum update of each sub-centroid towards the mean direction of its assigned features.

        ``memo`` is the (unit features, slots) pair of the step's loss on these labels; empty: recompute.
        """
        c = self.centroids
        if memo:
            unit, slots = memo
        else:
            unit = unit_rows(h)
            slots = self.sinkhorn_slots(unit @ c.T, y)
        # The normalised sum is the mean direction (the authors normalise before the EMA); an
        # empty slot's is 0, so its blend is m c, which normalises back to c when m > 0.
        sums = self.sum_over_ranks(c.new_zeros(c.shape).index_add_(0, slots, unit))
        mean_dir = F.normalize(sums, dim=1)
        blended = torch.lerp(mean_dir, c, self.momentum)
        if self.momentum == 0.0:
            blended = torch.where(mean_dir.any(dim=1, keepdim=True), mean_dir, c)
        F.normalize(blended, dim=1, out=c)
