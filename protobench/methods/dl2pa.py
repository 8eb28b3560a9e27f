"""DL2PA: fixed uniform prototypes with a label-to-prototype assignment re-matched every epoch.

Saadabadi et al., CVPR 2024 (docs/methods.md, "dl2pa"). Prototypes P are spread once by the
Gaussian-potential energy and never trained; class representatives Q follow an EMA of each
class's normalised batch-mean feature; after every epoch the Hungarian algorithm re-assigns
classes to prototypes to maximise sum_c cos(q_c, p_A(c)). Also here: the ``dl2pa-static``
ablation (same prototypes, the same seeded random assignment, never re-matched). Both take the
option ``prototype_kind`` (beyond the paper): the generator of their fixed prototypes, so one head asks
what the prototypes' spread buys with the matching and loss unchanged (docs/ablations.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.base import POSITIVE, OptionRange, register_method
from protobench.methods.prototype_head import MatchedPrototypeHead, PrototypeHead

#: The generators ``prototype_kind`` may name: the paper's, HPN's, and unoptimised random unit vectors.
PROTOTYPE_KINDS: tuple[str, ...] = ("uniform", "hpn", "random")


@register_method("dl2pa")
class DL2PA(MatchedPrototypeHead):
    """DL2PA with uniform prototypes, re-matched after every epoch.

    Hyperparameters (``defaults``):
      - ``t`` (2.0): sharpness of the Gaussian-potential energy the uniform prototypes minimise.
      - ``momentum`` (0.9): EMA weight m in q_c <- normalise(m q_c + (1 - m) mean_c), the
        intended update (the authors' code has an effective m of 0.95 and uses one sample per
        class; protobench does not copy that).

    Beyond the paper (``later_defaults``, with the matching schedule and loss of the base classes):
      - ``prototype_kind`` ("uniform"): the prototypes' generator, one of ``PROTOTYPE_KINDS``; ``t``
        applies to ``uniform`` only.
    """

    defaults = {"t": 2.0, "momentum": 0.9}
    later_defaults: ClassVar[dict[str, Any]] = {**MatchedPrototypeHead.later_defaults, "prototype_kind": "uniform"}
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        **MatchedPrototypeHead.option_ranges,
        "t": POSITIVE,
        "prototype_kind": OptionRange(choices=PROTOTYPE_KINDS),
    }
    #: The default generator of its prototypes (the degenerate-set warning reads the option over it).
    prototype_kind: str = "uniform"
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


@register_method("dl2pa-static")
class DL2PAStatic(DL2PA):
    """Ablation: DL2PA's uniform prototypes and initial assignment, never re-matched.

    Same hyperparameters and same initial assignment as ``dl2pa`` at the same seed, so the only
    difference between the two is the per-epoch matching; ``assignment_changed`` is always 0.
    It takes ``loss`` and ``tau`` but no matching schedule (it never re-matches).
    """

    rematch: ClassVar[bool] = False
    later_defaults: ClassVar[dict[str, Any]] = {**PrototypeHead.later_defaults, "prototype_kind": "uniform"}
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        **PrototypeHead.option_ranges, "momentum": DL2PA.option_ranges["momentum"], "t": POSITIVE,
        "prototype_kind": DL2PA.option_ranges["prototype_kind"],
    }  # fmt: skip

    def __init__(self, num_classes: int, dim: int, **options: Any) -> None:
        # Never re-matched, so no matching schedule: it is not an option of this head.
        super().__init__(num_classes, dim, match_every_steps=0, match_steps_until_epoch=0, **options)
