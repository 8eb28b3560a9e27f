"""``ebv``: near-orthogonal when d >= K; tau loosened to near the Welch bound when it is out of reach."""

from __future__ import annotations

import math

import pytest

from protobench import prototypes
from protobench.prototypes.ebv import welch_bound


@pytest.mark.parametrize(("K", "d"), [(10, 16), (20, 20)])
def test_near_orthogonal_when_d_at_least_k(K, d):
    P, info = prototypes.generate_with_info("ebv", K, d, use_cache=False, device="cpu")
    assert prototypes.metrics(P).max_abs_cosine <= 0.002 + 1e-6
    assert info.params["tau_used"] == 0.002 and not info.notes


def test_loosens_tau_when_d_below_k():
    K, d = 30, 10
    P, info = prototypes.generate_with_info("ebv", K, d, use_cache=False, device="cpu")
    reached = prototypes.metrics(P).max_abs_cosine
    tau = info.params["tau_used"]
    welch = welch_bound(K, d)
    assert tau > 0.002 and reached <= tau + 1e-6
    assert welch <= reached <= 1.25 * welch  # near the Welch bound, not just "anything"
    assert any("loosened" in note for note in info.notes)
    # An explicit, reachable tau is honoured without loosening.
    P2, info2 = prototypes.generate_with_info("ebv", K, d, tau=0.5, use_cache=False, device="cpu")
    assert prototypes.metrics(P2).max_abs_cosine <= 0.5 and info2.params["tau_used"] == 0.5


def test_welch_bound():
    assert welch_bound(30, 10) == pytest.approx(math.sqrt(20 / (10 * 29)))
    assert welch_bound(10, 10) == 0.0 and welch_bound(5, 16) == 0.0
