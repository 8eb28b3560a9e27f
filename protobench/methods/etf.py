"""ETF: a fixed simplex equiangular tight frame classifier with the dot-regression loss.

Yang et al., NeurIPS 2022 (docs/methods.md, "etf"); the head is protobench/heads/etf.py. The K class
vectors form a regular simplex (pairwise cosine -1/(K-1)), which exists only when d >= K-1: below that
the method is reported as not applicable rather than faked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from protobench.methods.card import MethodCard, register_method


@register_method("etf", head="protobench.heads.etf.ETF")
class ETFCard(MethodCard):
    """Fixed simplex ETF M (buffer ``prototypes``, K x d, never trained).

    Features h = L2norm(BatchNorm1d(z)); scores h M^T; loss = dot-regression with per-batch
    target scaling, whatever the loss family (it is the method's own loss). No hyperparameters.
    """

    defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def dimension_problem(cls, num_classes: int, dim: int) -> str | None:
        """A simplex of K vectors needs d >= K-1 (the ETF generator's own rule)."""
        from protobench.prototypes import etf_dimension_problem

        return etf_dimension_problem(num_classes, dim)
