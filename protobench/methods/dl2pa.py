"""DL2PA: fixed uniform prototypes with a label-to-prototype assignment re-matched every epoch.

Saadabadi et al., CVPR 2024 (docs/methods.md, "dl2pa"); the head is protobench/heads/dl2pa.py. Also
here: the ``dl2pa-static`` ablation (same prototypes, the same seeded random assignment, never
re-matched). Both take the option ``prototype_kind`` (beyond the paper): the generator of their fixed
prototypes, so one head asks what the prototypes' spread buys with the matching and loss unchanged
(docs/ablations.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import POSITIVE, OptionRange, register_method
from protobench.methods.prototype_head import MatchedPrototypeHeadCard, PrototypeHeadCard

#: The generators ``prototype_kind`` may name: the paper's, HPN's, and unoptimised random unit vectors.
PROTOTYPE_KINDS: tuple[str, ...] = ("uniform", "hpn", "random")


@register_method("dl2pa", head="protobench.heads.dl2pa.DL2PA")
class DL2PACard(MatchedPrototypeHeadCard):
    """DL2PA with uniform prototypes, re-matched after every epoch.

    Hyperparameters (``defaults``):
      - ``t`` (2.0): sharpness of the Gaussian-potential energy the uniform prototypes minimise.
      - ``momentum`` (0.9): EMA weight m in q_c <- normalise(m q_c + (1 - m) mean_c), the
        intended update (the authors' code has an effective m of 0.95 and uses one sample per
        class; protobench does not copy that).

    Beyond the paper (``later_defaults``, with the matching schedule and loss of the base cards):
      - ``prototype_kind`` ("uniform"): the prototypes' generator, one of ``PROTOTYPE_KINDS``; ``t``
        applies to ``uniform`` only.
    """

    defaults: ClassVar[dict[str, Any]] = {"t": 2.0, "momentum": 0.9}
    later_defaults: ClassVar[dict[str, Any]] = {**MatchedPrototypeHeadCard.later_defaults, "prototype_kind": "uniform"}
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        **MatchedPrototypeHeadCard.option_ranges,
        "t": POSITIVE,
        "prototype_kind": OptionRange(choices=PROTOTYPE_KINDS),
    }
    prototype_kind: ClassVar[str | None] = "uniform"


@register_method("dl2pa-static", head="protobench.heads.dl2pa.DL2PAStatic")
class DL2PAStaticCard(DL2PACard):
    """Ablation: DL2PA's uniform prototypes and initial assignment, never re-matched.

    Same hyperparameters and same initial assignment as ``dl2pa`` at the same seed, so the only
    difference between the two is the per-epoch matching; ``assignment_changed`` is always 0.
    It takes ``loss`` and ``tau`` but no matching schedule (it never re-matches).
    """

    later_defaults: ClassVar[dict[str, Any]] = {**PrototypeHeadCard.later_defaults, "prototype_kind": "uniform"}
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        **PrototypeHeadCard.option_ranges, "momentum": DL2PACard.option_ranges["momentum"], "t": POSITIVE,
        "prototype_kind": DL2PACard.option_ranges["prototype_kind"],
    }  # fmt: skip
