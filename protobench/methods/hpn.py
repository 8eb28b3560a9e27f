"""HPN: Hyperspherical Prototype Networks (Mettes et al., NeurIPS 2019), and its dynamic-matching ablation.

docs/methods.md, "hpn": prototypes fixed a priori by minimising the mean nearest-neighbour cosine,
class c -> prototype c for the whole run, DL2PA's loss and prediction rule. ``hpn-dynamic`` keeps
HPN's prototypes but re-assigns them every epoch exactly as DL2PA does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.base import register_method
from protobench.methods.prototype_head import MatchedPrototypeHead, PrototypeHead


@register_method("hpn")
class HPN(PrototypeHead):
    """HPN prototypes with the static assignment c -> c.

    No hyperparameters of its own (``defaults`` is empty): the prototypes come from the ``hpn``
    generator at the run's seed. ``balanced``: squared-cosine loss on the raw embedding;
    ``long-tailed``: dot-regression loss on L2norm(BatchNorm1d(z)). Prediction: argmax cos.
    """

    defaults: dict[str, Any] = {}
    #: The generator of its prototypes (read by the degenerate-set warning before training).
    prototype_kind: ClassVar[str] = "hpn"

    def __init__(self, num_classes: int, dim: int, **base: Any) -> None:
        super().__init__(num_classes, dim, prototype_kind="hpn", prototype_options={}, **base)


@register_method("hpn-dynamic")
class HPNDynamic(MatchedPrototypeHead):
    """Ablation: HPN's prototypes with DL2PA's representatives and per-epoch Hungarian matching.

    Hyperparameters: ``momentum`` (0.9), the representatives' EMA weight, as in ``dl2pa``.
    """

    defaults = {"momentum": 0.9}
    prototype_kind: ClassVar[str] = "hpn"

    def __init__(self, num_classes: int, dim: int, *, momentum: float, **base: Any) -> None:
        super().__init__(
            num_classes, dim, prototype_kind="hpn", prototype_options={}, momentum=momentum, rematch=True, **base
        )
