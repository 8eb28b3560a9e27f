"""HPN: Hyperspherical Prototype Networks (Mettes et al., NeurIPS 2019), and its dynamic-matching ablation.

docs/methods.md, "hpn"; the heads are in protobench/heads/hpn.py.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import register_method
from protobench.methods.prototype_head import MatchedPrototypeHeadCard, PrototypeHeadCard


@register_method("hpn", head="protobench.heads.hpn.HPN")
class HPNCard(PrototypeHeadCard):
    """HPN prototypes with the static assignment c -> c.

    No hyperparameters of its own (``defaults`` is empty): the prototypes come from the ``hpn``
    generator at the run's seed. ``balanced``: squared-cosine loss on the raw embedding;
    ``long-tailed``: dot-regression loss on L2norm(BatchNorm1d(z)). Prediction: argmax cos.
    """

    defaults: ClassVar[dict[str, Any]] = {}
    prototype_kind: ClassVar[str | None] = "hpn"


@register_method("hpn-dynamic", head="protobench.heads.hpn.HPNDynamic")
class HPNDynamicCard(MatchedPrototypeHeadCard):
    """Ablation: HPN's prototypes with DL2PA's representatives and per-epoch Hungarian matching.

    Hyperparameters: ``momentum`` (0.9), the representatives' EMA weight, as in ``dl2pa``.
    """

    defaults: ClassVar[dict[str, Any]] = {"momentum": 0.9}
    prototype_kind: ClassVar[str | None] = "hpn"
