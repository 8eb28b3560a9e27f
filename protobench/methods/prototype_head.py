"""The cards shared by the fixed-prototype methods (HPN, DL2PA and their ablations, docs/methods.md): the
options their heads (protobench/heads/prototype_head.py) take beyond each method's own."""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import POSITIVE, UNIT_INTERVAL, MethodCard, OptionRange

#: The balanced family's losses (option ``loss``): the paper's squared cosine, or a cross-entropy
#: over the cosines to every class's assigned prototype divided by ``tau``.
PROTOTYPE_LOSSES: tuple[str, ...] = ("sq-cos", "cos-ce")


class PrototypeHeadCard(MethodCard):
    """Fixed unit prototypes and a class -> prototype assignment.

    Options added after the paper's runs (``later_defaults``): ``loss`` (balanced family only),
    ``sq-cos`` (the paper's squared cosine, summed over the batch) or ``cos-ce`` (cross-entropy over
    cos(h, p_A(c)) / ``tau`` for every class c, a batch mean); ``tau`` (0.1) is cos-ce's temperature.
    """

    later_defaults: ClassVar[dict[str, Any]] = {"loss": "sq-cos", "tau": 0.1}
    option_ranges: ClassVar[dict[str, OptionRange]] = {"loss": OptionRange(choices=PROTOTYPE_LOSSES), "tau": POSITIVE}


class MatchedPrototypeHeadCard(PrototypeHeadCard):
    """Prototypes matched to classes through class representatives, DL2PA's mechanism.

    Matching schedule (``later_defaults``, beyond the paper): with ``match_every_steps`` N > 0 the
    assignment is also re-matched every N optimiser steps (counted over the run) during the first
    ``match_steps_until_epoch`` epochs.
    """

    later_defaults: ClassVar[dict[str, Any]] = {
        **PrototypeHeadCard.later_defaults,
        "match_every_steps": 0,
        "match_steps_until_epoch": 1,
    }
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        **PrototypeHeadCard.option_ranges,
        "momentum": UNIT_INTERVAL,
        "match_every_steps": OptionRange(low=0, integer=True),
        "match_steps_until_epoch": OptionRange(low=0, integer=True),
    }
