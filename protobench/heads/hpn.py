"""HPN's head and its dynamic-matching ablation's (cards: protobench/methods/hpn.py).

docs/methods.md, "hpn": prototypes fixed a priori by minimising the mean nearest-neighbour cosine,
class c -> prototype c for the whole run, DL2PA's loss and prediction rule. ``hpn-dynamic`` keeps
HPN's prototypes but re-assigns them every epoch exactly as DL2PA does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.heads.prototype_head import MatchedPrototypeHead, PrototypeHead
from protobench.methods.hpn import HPNCard, HPNDynamicCard
from protobench.methods.prototype_head import PrototypeHeadCard


class HPN(PrototypeHead):
    """HPN prototypes with the static assignment c -> c."""

    card: ClassVar[type[PrototypeHeadCard]] = HPNCard

    def __init__(self, num_classes: int, dim: int, **base: Any) -> None:
        super().__init__(num_classes, dim, prototype_kind="hpn", prototype_options={}, **base)


class HPNDynamic(MatchedPrototypeHead):
    """HPN's prototypes with DL2PA's representatives and per-epoch Hungarian matching."""

    card: ClassVar[type[PrototypeHeadCard]] = HPNDynamicCard

    def __init__(self, num_classes: int, dim: int, *, momentum: float, **base: Any) -> None:
        super().__init__(
            num_classes, dim, prototype_kind="hpn", prototype_options={}, momentum=momentum, rematch=True, **base
        )
