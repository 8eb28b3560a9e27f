"""DL2PA's head and its static ablation's (cards: protobench/methods/dl2pa.py).

Saadabadi et al., CVPR 2024 (docs/methods.md, "dl2pa"). Prototypes P are spread once by the
Gaussian-potential energy and never trained; class representatives Q follow an EMA of each
class's normalised batch-mean feature; after every epoch the Hungarian algorithm re-assigns
classes to prototypes to maximise sum_c cos(q_c, p_A(c)).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.heads.prototype_head import MatchedPrototypeHead
from protobench.methods.dl2pa import DL2PACard, DL2PAStaticCard
from protobench.methods.prototype_head import PrototypeHeadCard


class DL2PA(MatchedPrototypeHead):
    """DL2PA with the prototypes of ``prototype_kind`` (uniform by default), re-matched after every epoch."""

    card: ClassVar[type[PrototypeHeadCard]] = DL2PACard
    #: Whether the assignment is re-matched after every epoch (the ablation turns it off).
    rematch: ClassVar[bool] = True

    def __init__(
        self, num_classes: int, dim: int, *, t: float, momentum: float, prototype_kind: str, **base: Any
    ) -> None:
        options = {"t": float(t)} if prototype_kind == "uniform" else {}
        super().__init__(
            num_classes, dim, prototype_kind=prototype_kind, prototype_options=options,
            momentum=momentum, rematch=self.rematch, **base,
        )  # fmt: skip
        self.t = float(t)
        self.prototype_kind = prototype_kind


class DL2PAStatic(DL2PA):
    """Ablation: DL2PA's prototypes and initial assignment, never re-matched."""

    card: ClassVar[type[PrototypeHeadCard]] = DL2PAStaticCard
    rematch: ClassVar[bool] = False

    def __init__(self, num_classes: int, dim: int, **options: Any) -> None:
        # Never re-matched, so no matching schedule: it is not an option of this head.
        super().__init__(num_classes, dim, match_every_steps=0, match_steps_until_epoch=0, **options)
