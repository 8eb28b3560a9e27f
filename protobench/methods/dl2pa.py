"""DL2PA: fixed uniform prototypes with a label-to-prototype assignment re-matched every epoch.

Saadabadi et al., CVPR 2024 (docs/methods.md, "dl2pa"). Prototypes P are spread once by the
Gaussian-potential energy and never trained; class representatives Q follow an EMA of each
class's normalised batch-mean feature; after every epoch the Hungarian algorithm re-assigns
classes to prototypes to maximise sum_c cos(q_c, p_A(c)). Also here: the ``dl2pa-static``
ablation (same prototypes, the same seeded random assignment, never re-matched).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.base import register_method
from protobench.methods.prototype_head import MatchedPrototypeHead, PrototypeHead


@register_method("dl2pa")
class DL2PA(MatchedPrototypeHead):
    """DL2PA with uniform prototypes, re-matched after every epoch.

    Hyperparameters (``defaults``):
      - ``t`` (2.0): sharpness of the Gaussian-potential energy the uniform prototypes minimise.
      - ``momentum`` (0.9): EMA weight m in q_c <- normalise(m q_c + (1 - m) mean_c), the
        intended update (the authors' code has an effective m of 0.95 and uses one sample per
        class; protobench does not copy that).
    """

    defaults = {"t": 2.0, "momentum": 0.9}
    #: The generator of its prototypes (read by the degenerate-set warning before training).
    prototype_kind: ClassVar[str] = "uniform"
    #: Whether the assignment is re-matched after every epoch (the ablation turns it off).
    rematch: ClassVar[bool] = True

    def __init__(self, num_classes: int, dim: int, *, t: float, momentum: float, **base: Any) -> None:
        super().__init__(
            num_classes, dim, prototype_kind=self.prototype_kind, prototype_options={"t": float(t)},
            momentum=momentum, rematch=self.rematch, **base,
        )  # fmt: skip
        self.t = float(t)


@register_method("dl2pa-static")
class DL2PAStatic(DL2PA):
    """Ablation: DL2PA's uniform prototypes and initial assignment, never re-matched.

    Same hyperparameters and same initial assignment as ``dl2pa`` at the same seed, so the only
    difference between the two is the per-epoch matching; ``assignment_changed`` is always 0.
    It takes ``loss`` and ``tau`` but no matching schedule (it never re-matches).
    """

    rematch: ClassVar[bool] = False
    later_defaults: ClassVar[dict[str, Any]] = PrototypeHead.later_defaults

    def __init__(self, num_classes: int, dim: int, **options: Any) -> None:
        # Never re-matched, so no matching schedule: it is not an option of this head.
        super().__init__(num_classes, dim, match_every_steps=0, match_steps_until_epoch=0, **options)
