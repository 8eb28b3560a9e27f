"""DL2PA: fixed uniform prototypes with a label-to-prototype assignment re-matched every epoch.

Method.md section 2. Prototypes P are spread once by the Gaussian-potential energy and never
trained; class representatives Q follow an EMA of each class's normalised batch-mean feature;
after every epoch the Hungarian algorithm re-assigns classes to prototypes to maximise
sum_c cos(q_c, p_A(c)). Also here: the shared fixed-prototype head (used by HPN too) and the
``dl2pa-static`` ablation (same prototypes, fixed random assignment).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from protobench.assignment import hungarian, match
from protobench.errors import UserError
from protobench.methods.base import Method, register_method
from protobench.methods.losses import (
    check_loss_family,
    dot_regression_loss,
    random_unit_rows,
    squared_cosine_loss,
    unit_rows,
)
from protobench.prototypes import generate


class PrototypeHead(Method):
    """Fixed unit prototypes (buffer ``prototypes``, K x d) and a class -> prototype ``assignment``.

    Loss families: ``balanced`` trains the raw embedding with the squared-cosine loss towards
    p_A(y); ``long-tailed`` maps it through BatchNorm1d and L2 normalisation and uses the
    dot-regression loss with targets P[A]. Prediction: argmax_c cos(h, p_A(c)).
    ``class_targets`` = P[A] is kept as a derived buffer (refreshed whenever the assignment
    changes or a checkpoint is loaded), so a step indexes it once instead of composing P[A][y].
    """

    #: The registered name, for error messages.
    method_name: ClassVar[str] = "prototype head"
    #: Whether after_step uses the step's unit features (the loss then keeps them for it).
    tracks_features: ClassVar[bool] = False

    def __init__(self, num_classes: int, dim: int, **base: Any) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family(self.method_name, self.loss_family)
        # Only the long-tailed head has learnable parameters; the balanced one is parameter-free.
        self.bn = nn.BatchNorm1d(dim) if self.loss_family == "long-tailed" else None
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def _install(self, prototypes: torch.Tensor, assignment: torch.Tensor) -> None:
        """Register the prototypes and assignment as persistent buffers (so they are checkpointed)."""
        self.register_buffer("prototypes", prototypes.to(torch.float32))
        self.register_buffer("assignment", assignment.to(torch.long))
        self.register_buffer("class_targets", self.prototypes[self.assignment], persistent=False)

    @torch.no_grad()
    def refresh_class_targets(self) -> None:
        """Recompute ``class_targets`` = P[A] after the assignment changed."""
        if hasattr(self, "class_targets"):
            self.class_targets.copy_(self.prototypes[self.assignment])

    def class_prototypes(self) -> torch.Tensor:
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
        if self.bn is not None:
            return dot_regression_loss(h, self.class_targets, y)
        loss, unit = squared_cosine_loss(h, self.class_targets[y])
        if self.tracks_features:
            self.remember_for_step(h, y, unit)
        return loss

    def _unit_features(self, h: torch.Tensor) -> torch.Tensor:
        """Unit rows of ``h``: those the step's loss already computed when it saw these features."""
        memo = self.recall_for_step(h)
        return memo[0] if memo is not None else unit_rows(h)


def _refresh_after_load(module: PrototypeHead, _incompatible_keys: Any) -> None:
    """load_state_dict post-hook: the derived P[A] follows the loaded prototypes and assignment."""
    module.refresh_class_targets()


@register_method("dl2pa")
class DL2PA(PrototypeHead):
    """DL2PA (Saadabadi et al., CVPR 2024) as method.md section 2 defines it.

    Hyperparameters (``defaults``):
      - ``t`` (2.0): sharpness of the Gaussian-potential energy the uniform prototypes minimise.
      - ``momentum`` (0.9): EMA weight m in q_c <- normalise(m q_c + (1 - m) mean_c), the
        intended update (the authors' code has an effective m of 0.95 and uses one sample per
        class; protobench does not copy that).

    Buffers: ``prototypes`` (K x d, fixed), ``assignment`` (K, class -> prototype index),
    ``representatives`` (K x d unit rows, no gradient). The initial assignment is the Hungarian
    solution on the seeded random initial representatives (effectively a seeded random permutation).
    """

    defaults = {"t": 2.0, "momentum": 0.9}
    method_name = "dl2pa"
    tracks_features = True
    prototype_kind = "uniform"

    def __init__(self, num_classes: int, dim: int, *, t: float = 2.0, momentum: float = 0.9, **base: Any) -> None:
        super().__init__(num_classes, dim, **base)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"method '{self.method_name}': momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.t = float(t)
        self.prototype_params = self._prototype_params(t)
        prototypes = generate(self.prototype_kind, num_classes, dim, self.seed, **self.prototype_params)
        representatives = random_unit_rows(num_classes, dim, self.seed, "dl2pa-representatives")
        self._install(prototypes, hungarian(representatives, prototypes))
        self.register_buffer("representatives", representatives)

    def _prototype_params(self, t: float) -> dict[str, Any]:
        """Parameters passed to the prototype generator (and recorded as hyperparameters)."""
        return {"t": float(t)}

    @torch.no_grad()
    def after_step(self, h: torch.Tensor, y: torch.Tensor) -> None:
        """q_c <- normalise(m q_c + (1 - m) mean_c) for each class in the batch; absent classes keep q_c."""
        q = self.representatives
        # One index_add gives each class's feature sum and (in the appended column of ones) its count.
        stats = q.new_zeros(self.num_classes, self.dim + 1).index_add_(
            0, y, F.pad(self._unit_features(h), (0, 1), value=1.0)
        )
        counts = stats[:, -1:]
        blended = torch.lerp(stats[:, :-1] / counts.clamp(min=1.0), q, self.momentum)
        if self.momentum == 0.0:  # m q_c is 0 for an absent class: keep its q_c explicitly
            blended = torch.where(counts > 0, blended, q)
        # An absent class's row is m q_c, which normalises back to q_c: no mask needed for m > 0.
        F.normalize(blended, dim=1, out=q)

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        """Re-match classes to prototypes (Hungarian, on the CPU) and report how much moved."""
        result = match(self.representatives.cpu(), self.prototypes.cpu(), previous=self.assignment.cpu())
        self.assignment.copy_(result.assignment.to(self.assignment.device))
        self.refresh_class_targets()
        return self._diagnostics(int(result.changed))

    def _diagnostics(self, changed: int) -> dict[str, float]:
        cosine = (F.normalize(self.representatives, dim=1) * self.class_prototypes()).sum(dim=1).mean()
        return {"assignment_changed": changed, "rep_proto_cosine": float(cosine)}


@register_method("dl2pa-static")
class DL2PAStatic(DL2PA):
    """Ablation: DL2PA's uniform prototypes with a fixed seeded random assignment, never re-matched.

    Same hyperparameters and same initial assignment as ``dl2pa`` at the same seed, so the only
    difference between the two is the per-epoch matching. The representatives are still tracked
    (``momentum``) for the ``rep_proto_cosine`` diagnostic; ``assignment_changed`` is always 0.
    """

    method_name = "dl2pa-static"

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        return self._diagnostics(0)
