"""PSC: the parametric softmax classifier (a learned linear layer and cross-entropy); the head is
protobench/heads/softmax.py."""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import UNIT_INTERVAL, MethodCard, OptionRange, register_method


@register_method("softmax", head="protobench.heads.softmax.Softmax")
class SoftmaxCard(MethodCard):
    """Linear(d, K) with bias on the embedding; softmax cross-entropy; prediction = argmax of logits.

    Hyperparameters (``defaults``): ``label_smoothing`` (0.0) of the cross-entropy.
    """

    defaults: ClassVar[dict[str, Any]] = {"label_smoothing": 0.0}
    option_ranges: ClassVar[dict[str, OptionRange]] = {"label_smoothing": UNIT_INTERVAL}
