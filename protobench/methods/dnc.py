"""DNC: Deep Nearest Centroids (Wang et al., ICLR 2023), classes summarised by sub-centroids.

Method.md section 3.5. Each class keeps m sub-centroids of its training features. Every step,
the class's batch features are split evenly over its sub-centroids by Sinkhorn-Knopp (balanced
clustering, so no sub-centroid starves) and each sub-centroid moves by momentum towards the mean
direction of its share; no gradient reaches the centroids. The backbone is trained with
cross-entropy over the class scores max_j cos(z, c_{k,j}) / temperature plus a compactness term.
The Sinkhorn step and the losses follow the authors' ProtoSeg/DNC code (distributed_sinkhorn with
epsilon 0.05, momentum 0.999, the (1 - cos)^2 "pixel-prototype distance" term weighted 0.01), except
the number of Sinkhorn iterations (see the class docstring).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from protobench.errors import UserError
from protobench.methods.base import Method, register_method
from protobench.methods.losses import check_loss_family, class_counts, class_sums, random_unit_rows


@register_method("dnc")
class DNC(Method):
    """Sub-centroid classifier; buffer ``centroids`` is (K*m) x d, rows k*m .. k*m+m-1 belong to class k.

    Hyperparameters (``defaults``):
      - ``sub_centroids`` (4): m per class; m = 1 is the nearest-class-mean classifier.
      - ``temperature`` (0.1): divides the cosine scores in the cross-entropy.
      - ``momentum`` (0.999): centroid EMA weight, the authors' value (each class is in almost
        every batch, so centroids still track the features within a few epochs; lower it, e.g.
        to 0.99, for runs of only a few hundred steps).
      - ``compactness_weight`` (0.01): weight of mean (1 - cos(z, assigned sub-centroid))^2.
      - ``sinkhorn_iterations`` (10): the authors run 3, which from a skewed start (every
        feature nearest one sub-centroid) leaves the plan far from its marginals (a class of 12
        split about 5/2/3/2); 10 balances it at negligible cost (N x m arithmetic).
      - ``sinkhorn_epsilon`` (0.05): the authors' entropy weight.
    Centroids start as seeded random unit vectors. The same loss serves both loss families.
    """

    defaults = {
        "sub_centroids": 4,
        "temperature": 0.1,
        "momentum": 0.999,
        "compactness_weight": 0.01,
        "sinkhorn_iterations": 10,
        "sinkhorn_epsilon": 0.05,
    }

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        sub_centroids: int = 4,
        temperature: float = 0.1,
        momentum: float = 0.999,
        compactness_weight: float = 0.01,
        sinkhorn_iterations: int = 10,
        sinkhorn_epsilon: float = 0.05,
        **base: Any,
    ) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family("dnc", self.loss_family)
        for name, value in (("sub_centroids", sub_centroids), ("sinkhorn_iterations", sinkhorn_iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"method 'dnc': {name} must be a positive integer, got {value!r}")
        if not float(temperature) > 0 or not float(sinkhorn_epsilon) > 0:
            raise UserError("method 'dnc': temperature and sinkhorn_epsilon must be positive")
        if not 0.0 <= float(momentum) < 1.0:
            raise UserError(f"method 'dnc': momentum must be in [0, 1), got {momentum}")
        if float(compactness_weight) < 0:
            raise UserError(f"method 'dnc': compactness_weight must be >= 0, got {compactness_weight}")
        self.sub_centroids = sub_centroids
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.compactness_weight = float(compactness_weight)
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        centroids = random_unit_rows(num_classes * sub_centroids, dim, self.seed, "dnc-centroids")
        self.register_buffer("centroids", centroids)
        self._last_assignment: tuple[torch.Tensor, torch.Tensor] | None = None

    def _cosines(self, h: torch.Tensor) -> torch.Tensor:
        """N x K x m cosines between the features and every sub-centroid."""
        cos = F.normalize(h.float(), dim=1) @ self.centroids.T
        return cos.view(h.shape[0], self.num_classes, self.sub_centroids)

    @staticmethod
    def _own(cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N x m: each row's cosines to the sub-centroids of its own class (a gather, no loop)."""
        index = y.view(-1, 1, 1).expand(-1, 1, cos.shape[2])
        return cos.gather(1, index).squeeze(1)

    @torch.no_grad()
    def sinkhorn_plan(self, own: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N x m soft balanced assignment of each row to its class's m sub-centroids (rows sum to 1).

        Sinkhorn-Knopp run for all classes at once: the row constraint (each sample's mass sums
        to 1) is a per-row normalisation, the column constraint (within class k each sub-centroid
        receives n_k / m) a per-class normalisation whose sums come from index_add over labels.
        """
        tiny = torch.finfo(torch.float32).tiny
        m = self.sub_centroids
        counts = class_counts(y, self.num_classes)
        # Subtracting one global constant is a common scale factor, which every normalisation
        # below cancels; it only keeps exp() in range.
        q = torch.exp((own.float() - own.max()) / self.sinkhorn_epsilon)
        for _ in range(self.sinkhorn_iterations):
            columns = class_sums(q, y, self.num_classes)  # K x m mass per (class, sub-centroid)
            q = q * (counts[y].unsqueeze(1) / (columns[y] * m).clamp_min(tiny))
            q = q / q.sum(dim=1, keepdim=True).clamp_min(tiny)
        return q

    @torch.no_grad()
    def sinkhorn_assign(self, own: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hard balanced assignment: each row's sub-centroid index (0..m-1) under the Sinkhorn plan."""
        return self.sinkhorn_plan(own, y).argmax(dim=1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self._cosines(h).amax(dim=2) / self.temperature

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cos = self._cosines(h)
        ce = F.cross_entropy(cos.amax(dim=2) / self.temperature, y)
        own = self._own(cos, y)
        assigned = self.sinkhorn_assign(own.detach(), y)
        if self.training:
            # after_step sees the same features, labels and centroids: it reuses this clustering.
            self._last_assignment = (y, assigned)
        nearest = own.gather(1, assigned.unsqueeze(1)).squeeze(1)
        return ce + self.compactness_weight * (1.0 - nearest).pow(2).mean()

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor) -> None:
        """Momentum update of each sub-centroid towards the mean direction of its assigned features."""
        c = self.centroids
        feats = F.normalize(h.to(c.dtype), dim=1)
        cached, self._last_assignment = self._last_assignment, None
        if cached is not None and cached[0] is y:
            assigned = cached[1]
        else:  # with mixup the step's labels are not the ones the last loss call clustered
            own = self._own((feats @ c.T).view(-1, self.num_classes, self.sub_centroids), y)
            assigned = self.sinkhorn_assign(own, y)
        slot = y * self.sub_centroids + assigned
        total = c.shape[0]
        # The normalised sum is the mean direction (as the authors normalise before the EMA).
        mean_dir = F.normalize(class_sums(feats, slot, total), dim=1)
        updated = F.normalize(self.momentum * c + (1.0 - self.momentum) * mean_dir, dim=1)
        present = class_counts(slot, total, dtype=c.dtype) > 0
        c.copy_(torch.where(present.unsqueeze(1), updated, c))
