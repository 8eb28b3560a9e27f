"""The fixed-prototype head shared by HPN, DL2PA and their ablations (docs/methods.md).

``PrototypeHead``: K fixed unit prototypes from a named generator, a class -> prototype assignment,
the squared-cosine loss (balanced) or BatchNorm + L2 and the dot-regression loss (long-tailed),
prediction by the largest cosine to the assigned prototype. ``MatchedPrototypeHead`` adds DL2PA's
class representatives (an EMA of each class's mean unit feature) and, when ``rematch`` is on, the
per-epoch Hungarian re-matching of classes to prototypes (Saadabadi et al., CVPR 2024, Sec. 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protobench.assignment import hungarian, match
from protobench.errors import UserError
from protobench.methods.base import Method, StepMemo, check_loss_family
from protobench.methods.losses import dot_regression_loss, random_unit_rows, squared_cosine_loss, unit_rows
from protobench.prototypes import generate


class PrototypeHead(Method):
    """Fixed unit prototypes (buffer ``prototypes``, K x d) and a class -> prototype ``assignment``.

    ``prototype_kind`` names the generator (``protobench.prototypes``) and ``prototype_options``
    its parameters; the assignment starts as the identity c -> c. Loss families: ``balanced``
    trains the raw embedding with the squared-cosine loss towards p_A(y); ``long-tailed`` maps it
    through BatchNorm1d and L2 normalisation and uses the dot-regression loss with targets P[A].
    Prediction: argmax_c cos(h, p_A(c)). ``class_targets`` = P[A] is a derived buffer (refreshed
    whenever the assignment changes or a checkpoint is loaded), so a step indexes it once.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        prototype_kind: str,
        prototype_options: Mapping[str, Any],
        **base: Any,
    ) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family(self.method_name, self.loss_family)
        # Only the long-tailed head has learnable parameters; the balanced one is parameter-free.
        self.bn = nn.BatchNorm1d(dim) if self.loss_family == "long-tailed" else None
        self.loss_reduction = "sum" if self.bn is None else "mean"  # squared cosine: summed over the batch
        prototypes = generate(prototype_kind, num_classes, dim, self.seed, **prototype_options)
        self.register_buffer("prototypes", prototypes.to(torch.float32))
        self.register_buffer("assignment", torch.arange(num_classes))
        self.register_buffer("class_targets", self.prototypes[self.assignment], persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    @torch.no_grad()
    def refresh_class_targets(self) -> None:
        """Recompute ``class_targets`` = P[A] after the assignment changed."""
        self.class_targets.copy_(self.prototypes[self.assignment])

    def class_anchors(self) -> torch.Tensor:
        """K x d: row c is the prototype currently assigned to class c."""
        return self.class_targets

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return z
        return unit_rows(self.bn(z))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return unit_rows(h) @ self.class_targets.T

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        # Dividing a row by its (positive) length does not change its argmax: skip the normalisation.
        return (h.float() @ self.class_targets.T).argmax(dim=1)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.step_loss(h, y)[0]

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        """The loss, and (balanced) the unit features it computed, which after_step reuses."""
        if self.bn is not None:
            return dot_regression_loss(h, self.class_targets, y), ()
        loss, unit = squared_cosine_loss(h, self.class_targets[y])
        return loss, (unit,)


def _refresh_after_load(module: PrototypeHead, _incompatible_keys: Any) -> None:
    """load_state_dict post-hook: the derived P[A] follows the loaded prototypes and assignment."""
    module.refresh_class_targets()


class MatchedPrototypeHead(PrototypeHead):
    """Prototypes matched to classes through class representatives, DL2PA's mechanism.

    Buffer ``representatives`` (K x d unit rows, no gradient) starts as seeded random unit vectors;
    after every step q_c <- normalise(m q_c + (1 - m) mean_c) for each class c in the batch
    (``momentum`` m; absent classes keep q_c). The initial assignment is the Hungarian solution on
    those random representatives (a seeded random permutation). With ``rematch`` every epoch ends
    by re-assigning classes to prototypes to maximise sum_c cos(q_c, p_A(c)); without it the
    assignment never changes (the representatives still feed the ``rep_proto_cosine`` diagnostic).
    """

    def __init__(self, num_classes: int, dim: int, *, momentum: float, rematch: bool, **head: Any) -> None:
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"method '{self.method_name}': momentum must be in [0, 1), got {momentum}")
        super().__init__(num_classes, dim, **head)
        self.momentum = momentum
        self.rematch = rematch
        representatives = random_unit_rows(num_classes, dim, self.seed, "dl2pa-representatives")
        self.assignment.copy_(hungarian(representatives, self.prototypes))
        self.refresh_class_targets()
        self.register_buffer("representatives", representatives)

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor, memo: StepMemo = ()) -> None:
        """q_c <- normalise(m q_c + (1 - m) mean_c) for each class in the batch; absent classes keep q_c.

        ``memo`` holds the unit rows of ``h`` when the step's loss computed them (balanced loss).
        """
        q = self.representatives
        unit = memo[0] if memo else unit_rows(h)
        # One index_add gives each class's feature sum and (in the appended column of ones) its count.
        stats = q.new_zeros(self.num_classes, self.dim + 1).index_add_(0, y, F.pad(unit, (0, 1), value=1.0))
        stats = self.sum_over_ranks(stats)  # the whole global batch's sums and counts on every rank
        counts = stats[:, -1:]
        blended = torch.lerp(stats[:, :-1] / counts.clamp(min=1.0), q, self.momentum)
        if self.momentum == 0.0:  # m q_c is 0 for an absent class: keep its q_c explicitly
            blended = torch.where(counts > 0, blended, q)
        # An absent class's row is m q_c, which normalises back to q_c: no mask needed for m > 0.
        F.normalize(blended, dim=1, out=q)

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        """Re-match classes to prototypes (Hungarian, on the CPU) when ``rematch``; report how much moved."""
        changed = 0
        if self.rematch:
            result = match(self.representatives.cpu(), self.prototypes.cpu(), previous=self.assignment.cpu())
            self.assignment.copy_(result.assignment.to(self.assignment.device))
            self.refresh_class_targets()
            changed = int(result.changed)
        cosine = (F.normalize(self.representatives, dim=1) * self.class_anchors()).sum(dim=1).mean()
        return {"assignment_changed": changed, "rep_proto_cosine": float(cosine)}
