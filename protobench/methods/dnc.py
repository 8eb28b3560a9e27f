"""DNC: Deep Nearest Centroids (Wang et al., ICLR 2023), classes summarised by sub-centroids; the head is
protobench/heads/dnc.py (docs/methods.md, "dnc")."""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, MethodCard, OptionRange, register_method


@register_method("dnc", head="protobench.heads.dnc.DNC")
class DNCCard(MethodCard):
    """Sub-centroid classifier; buffer ``centroids`` is (K*m) x d, rows k*m .. k*m+m-1 belong to class k.

    Hyperparameters (``defaults``):
      - ``sub_centroids`` (4): m per class; m = 1 is the nearest-class-mean classifier.
      - ``temperature`` (0.1): divides the cosine scores in the cross-entropy.
      - ``momentum`` (0.999): centroid EMA weight, the authors' value (each class is in almost
        every batch, so centroids still track the features within a few epochs; lower it, e.g.
        to 0.99, for runs of only a few hundred steps).
      - ``compactness_weight`` (0.01): weight of mean (1 - cos(z, assigned sub-centroid))^2.
      - ``sinkhorn_iterations`` (10): the authors run 3, which from a skewed start (every
        feature nearest one sub-centroid) leaves the plan far from its marginals (a class of 12
        split about 5/2/3/2); 10 balances it (two N x (K*m) matrix-vector products an iteration).
      - ``sinkhorn_epsilon`` (0.05): the authors' entropy weight.
    Centroids start as seeded random unit vectors. The same loss serves both loss families.
    """

    defaults: ClassVar[dict[str, Any]] = {
        "sub_centroids": 4,
        "temperature": 0.1,
        "momentum": 0.999,
        "compactness_weight": 0.01,
        "sinkhorn_iterations": 10,
        "sinkhorn_epsilon": 0.05,
    }
    option_ranges: ClassVar[dict[str, OptionRange]] = {
        "sub_centroids": OptionRange(low=1, integer=True),
        "temperature": POSITIVE,
        "momentum": UNIT_INTERVAL,
        "compactness_weight": NON_NEGATIVE,
        "sinkhorn_iterations": OptionRange(low=1, integer=True),
        "sinkhorn_epsilon": POSITIVE,
    }
