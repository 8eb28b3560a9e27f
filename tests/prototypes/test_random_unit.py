"""The ``random`` generator: seeded unit vectors, the uniform solver's starting point, not spread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from protobench.prototypes import generate
from protobench.prototypes.degeneracy import min_angle_deg


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("PROTOBENCH_CACHE", str(tmp_path))
    yield


def test_random_rows_are_unit_seeded_and_less_spread_than_uniform() -> None:
    P = generate("random", 20, 3, 0)
    assert P.shape == (20, 3) and torch.allclose(P.norm(dim=1), torch.ones(20))
    assert torch.equal(P, generate("random", 20, 3, 0, use_cache=False))
    assert not torch.equal(P, generate("random", 20, 3, 1))
    assert min_angle_deg(P) < 0.5 * min_angle_deg(generate("uniform", 20, 3, 0))
