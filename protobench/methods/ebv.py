"""EBV: Equiangular Basis Vectors (Shen et al., CVPR 2023), fixed near-orthogonal class vectors with a
cosine-softmax; the head is protobench/heads/ebv.py (docs/methods.md, "ebv")."""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import POSITIVE, UNIT_INTERVAL, MethodCard, OptionRange, register_method


@register_method("ebv", head="protobench.heads.ebv.EBV")
class EBVCard(MethodCard):
    """Fixed EBV vectors (buffer ``prototypes``, K x d); scores cos(z, v_c) / temperature.

    Hyperparameters (``defaults``):
      - ``temperature`` (0.07): divides the cosines, as in the EBV paper.
      - ``label_smoothing`` (0.1): of the cross-entropy, as in the EBV paper.
      - ``tau`` (None): the generator's max |cos| target; None = its default (0.002, loosened
        automatically when d < K, where so small a value is impossible).
    The same loss is used for both loss families.
    """

    defaults: ClassVar[dict[str, Any]] = {"temperature": 0.07, "label_smoothing": 0.1, "tau": None}
    option_ranges: ClassVar[dict[str, OptionRange]] = {"temperature": POSITIVE, "label_smoothing": UNIT_INTERVAL}
    prototype_kind: ClassVar[str | None] = "ebv"
