"""HPN: Hyperspherical Prototype Networks (Mettes et al., NeurIPS 2019), and its dynamic-matching ablation.

Method.md section 3.3: prototypes fixed a priori by minimising the mean nearest-neighbour cosine,
class c -> prototype c for the whole run, DL2PA's loss and prediction rule. ``hpn-dynamic`` keeps
HPN's prototypes but re-assigns them every epoch exactly as DL2PA does.
"""

from __future__ import annotations

from typing import Any

import torch

from protobench.methods.base import register_method
from protobench.methods.dl2pa import DL2PA, PrototypeHead
from protobench.prototypes import generate


@register_method("hpn")
class HPN(PrototypeHead):
    """HPN prototypes with the static assignment c -> c.

    No hyperparameters of its own (``defaults`` is empty): the prototypes come from the ``hpn``
    generator at the run's seed. ``balanced``: squared-cosine loss on the raw embedding;
    ``long-tailed``: dot-regression loss on L2norm(BatchNorm1d(z)). Prediction: argmax cos.
    """

    defaults: dict[str, Any] = {}
    method_name = "hpn"

    def __init__(self, num_classes: int, dim: int, **base: Any) -> None:
        super().__init__(num_classes, dim, **base)
        self._install(generate("hpn", num_classes, dim, self.seed), torch.arange(num_classes))


@register_method("hpn-dynamic")
class HPNDynamic(DL2PA):
    """Ablation: HPN's prototypes with DL2PA's representatives and per-epoch Hungarian matching.

    Hyperparameters: ``momentum`` (0.9), the representatives' EMA weight, as in ``dl2pa``.
    """

    defaults = {"momentum": 0.9}
    method_name = "hpn-dynamic"
    prototype_kind = "hpn"

    def __init__(self, num_classes: int, dim: int, *, momentum: float = 0.9, **base: Any) -> None:
        super().__init__(num_classes, dim, momentum=momentum, **base)

    def _prototype_params(self, t: float) -> dict[str, Any]:
        # HPN's generator has no sharpness parameter; DL2PA's t does not apply here.
        return {}
