"""The fixed-prototype head shared by HPN, DL2PA and their ablations (docs/methods.md).

``PrototypeHead``: K fixed unit prototypes from a named generator, a class -> prototype assignment,
the squared-cosine loss (balanced) or BatchNorm + L2 and the dot-regression loss (long-tailed),
prediction by the largest cosine to the assigned prototype. ``MatchedPrototypeHead`` adds DL2PA's
class representatives (an EMA of each class's mean unit feature) and, when ``rematch`` is on, the
per-epoch Hungarian re-matching of classes to prototypes (Saadabadi et al., CVPR 2024, Sec. 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from protobench.core.device import at_least_fp32
from protobench.core.errors import UserError
from protobench.heads.assignment import hungarian, match
from protobench.heads.base import Method, StepMemo
from protobench.heads.losses import dot_regression_loss, random_unit_rows, squared_cosine_loss, unit_rows
from protobench.methods.card import check_loss_family
from protobench.methods.prototype_head import MatchedPrototypeHeadCard, PrototypeHeadCard
from protobench.prototypes import generate


class PrototypeHead(Method):
    """Fixed unit prototypes (buffer ``prototypes``, K x d) and a class -> prototype ``assignment``.

    ``prototype_kind`` names the generator (``protobench.prototypes``) and ``prototype_options``
    its parameters; the assignment starts as the identity c -> c. Loss families: ``balanced``
    trains the raw embedding with the squared-cosine loss towards p_A(y); ``long-tailed`` maps it
    through BatchNorm1d and L2 normalisation and uses the dot-regression loss with targets P[A].
    Prediction: argmax_c cos(h, p_A(c)). ``class_targets`` = P[A] is a derived buffer (refreshed
    whenever the assignment changes or a checkpoint is loaded), so a step indexes it once.

    Options added after the paper's runs (``later_defaults``): ``loss`` (balanced family only),
    ``sq-cos`` (the paper's squared cosine, summed over the batch) or ``cos-ce`` (cross-entropy over
    cos(h, p_A(c)) / ``tau`` for every class c, a batch mean); ``tau`` (0.1) is cos-ce's temperature.
    """

    card: ClassVar[type[PrototypeHeadCard]] = PrototypeHeadCard

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        prototype_kind: str,
        prototype_options: Mapping[str, Any],
        loss: str,
        tau: float,
        **base: Any,
    ) -> None:
        super().__init__(num_classes, dim, **base)
        check_loss_family(self.method_name, self.loss_family)
        # loss and tau themselves are held to ``option_ranges``; what the family allows is checked here.
        if loss != "sq-cos" and self.loss_family != "balanced":
            raise UserError(f"method '{self.method_name}': loss {loss!r} is for the balanced loss family only")
        self.loss_name, self.tau = loss, float(tau)
        # Only the long-tailed head has learnable parameters; the balanced one is parameter-free.
        self.bn = nn.BatchNorm1d(dim) if self.loss_family == "long-tailed" else None
        # The squared cosine is summed over the batch, as the paper does; cos-ce is a mean.
        self.loss_reduction = "sum" if self.bn is None and self.loss_name == "sq-cos" else "mean"
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
        return (at_least_fp32(h) @ self.class_targets.T).argmax(dim=1)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.step_loss(h, y)[0]

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        """The loss, and (balanced) the unit features it computed, which after_step reuses."""
        if self.bn is not None:
            return dot_regression_loss(h, self.class_targets, y), ()
        if self.loss_name == "cos-ce":
            unit = unit_rows(h)
            return F.cross_entropy(unit @ self.class_targets.T / self.tau, y), (unit.detach(),)
        loss, unit = squared_cosine_loss(h, self.class_targets[y])
        return loss, (unit,)

    def hyperparameters(self) -> dict[str, Any]:
        # The option ``loss`` is kept as ``loss_name``: the attribute ``loss`` is the loss function.
        return {name: self.loss_name if name == "loss" else getattr(self, name) for name in self.card.option_names()}


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

    Matching schedule (``later_defaults``, beyond the paper): with ``match_every_steps`` N > 0 the
    assignment is also re-matched every N optimiser steps (counted over the run) during the first
    ``match_steps_until_epoch`` epochs, in ``after_update`` on the host; buffer ``step_matching``
    (only then) counts this epoch's step re-matchings and classes moved, recorded by ``after_epoch``.
    """

    card: ClassVar[type[PrototypeHeadCard]] = MatchedPrototypeHeadCard

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        momentum: float,
        rematch: bool,
        match_every_steps: int,
        match_steps_until_epoch: int,
        **head: Any,
    ) -> None:
        super().__init__(num_classes, dim, **head)
        self.momentum = float(momentum)
        self.rematch = rematch
        self.match_every_steps = match_every_steps
        self.match_steps_until_epoch = match_steps_until_epoch
        if match_every_steps > 0:  # only then: the default head's state_dict (and checkpoints) stay as they were
            self.register_buffer("step_matching", torch.zeros(2, dtype=torch.long))
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
    def rematch_now(self) -> int:
        """Re-assign classes to prototypes (Hungarian on the CPU, on the current representatives);
        returns how many classes changed prototype."""
        result = match(self.representatives.cpu(), self.prototypes.cpu(), previous=self.assignment.cpu())
        self.assignment.copy_(result.assignment.to(self.assignment.device))
        self.refresh_class_targets()
        return int(result.changed)

    @torch.no_grad()
    def after_update(self, step: int, epoch: int) -> None:
        """Every ``match_every_steps`` steps of the first ``match_steps_until_epoch`` epochs: re-match.

        Derived from ``step`` alone, so a resumed run re-matches at the same steps; a no-op (no sync)
        when the schedule is off.
        """
        every = self.match_every_steps
        if every > 0 and self.rematch and epoch < self.match_steps_until_epoch and step % every == 0:
            changed = self.rematch_now()
            self.step_matching[0] += 1
            self.step_matching[1] += changed

    @torch.no_grad()
    def after_epoch(self) -> dict[str, float]:
        """Re-match classes to prototypes (Hungarian, on the CPU) when ``rematch``; report how much moved
        (with a matching schedule, also this epoch's step re-matchings and the classes they moved)."""
        changed = self.rematch_now() if self.rematch else 0
        cosine = (F.normalize(self.representatives, dim=1) * self.class_anchors()).sum(dim=1).mean()
        diagnostics = {"assignment_changed": changed, "rep_proto_cosine": float(cosine)}
        if self.match_every_steps > 0:
            rematches, moved = self.step_matching.tolist()
            diagnostics.update(step_rematches=rematches, step_classes_moved=moved)
            self.step_matching.zero_()
        return diagnostics
