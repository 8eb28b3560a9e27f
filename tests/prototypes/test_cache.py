"""The prototype cache: a hit does not recompute, a damaged file is recomputed, and the keys never move."""

from __future__ import annotations

import pytest
import torch

import protobench.prototypes.solver as solver_module
from protobench import prototypes
from protobench.core.paths import cache_dir


def _cached_files() -> list:
    return sorted((cache_dir() / "prototypes").iterdir())


def test_cache_hit_does_not_recompute(monkeypatch):
    first = prototypes.generate("uniform", 12, 5, seed=1)
    files = _cached_files()
    assert len(files) == 1 and files[0].suffix == ".npz"

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    # The builder imports the solver when it runs, so patching the solver module reaches it.
    monkeypatch.setattr(solver_module, "sphere_minimise", boom)
    second, info = prototypes.generate_with_info("uniform", 12, 5, seed=1)
    assert info.cached and torch.equal(first, second)
    # A different key (t) is a miss, so it does reach the (now broken) optimiser.
    with pytest.raises(AssertionError, match="recomputed"):
        prototypes.generate("uniform", 12, 5, seed=1, t=3.0)
    # use_cache=False ignores the file.
    with pytest.raises(AssertionError, match="recomputed"):
        prototypes.generate("uniform", 12, 5, seed=1, use_cache=False)


def test_damaged_cache_file_is_recomputed():
    first = prototypes.generate("hpn", 5, 3)
    (path,) = _cached_files()
    path.write_bytes(b"garbage")
    assert torch.equal(prototypes.generate("hpn", 5, 3), first)


# Today's file names, written out: a change to the key (or to a default) orphans every cached set,
# so it must be deliberate (and come with a CACHE_VERSION or GENERATOR_VERSIONS bump), never a side effect.
@pytest.mark.parametrize(
    ("kind", "K", "d", "seed", "params", "name"),
    [
        ("uniform", 10, 3, 0, {}, "uniform_K10_d3_s0_d1782c21b361b595.npz"),
        ("uniform", 10, 3, 0, {"t": 3.0}, "uniform_K10_d3_s0_baeaf7c9fb0be27e.npz"),
        ("hpn", 10, 3, 0, {}, "hpn_K10_d3_s0_404815cc3986566e.npz"),
        ("hpn", 10, 3, 0, {"max_iter": 800}, "hpn_K10_d3_s0_5329952bba11704d.npz"),
        ("etf", 10, 9, 0, {}, "etf_K10_d9_s0_59a025313827859b.npz"),
        ("ebv", 10, 16, 0, {}, "ebv_K10_d16_s0_79c3aff49ecf0f20.npz"),
        ("ebv", 10, 16, 0, {"tau": 0.3}, "ebv_K10_d16_s0_0307ef2dc2158a11.npz"),
    ],
)
def test_cache_file_names_are_stable(kind, K, d, seed, params, name):
    resolved = prototypes.resolve_params(kind, K, d, seed, params)
    assert prototypes.cache_path(kind, K, d, seed, resolved) == cache_dir() / "prototypes" / name


def test_a_bumped_generator_version_has_a_cache_file_of_its_own(monkeypatch):
    import dataclasses

    from protobench.prototypes.base import GENERATOR_REGISTRY

    resolved = prototypes.resolve_params("uniform", 10, 3, 0, {})
    before = prototypes.cache_path("uniform", 10, 3, 0, resolved)
    bumped = dataclasses.replace(prototypes.get_generator("uniform"), version=2)
    monkeypatch.setitem(GENERATOR_REGISTRY._entries, "uniform", bumped)
    assert prototypes.cache_path("uniform", 10, 3, 0, resolved) != before


def test_generate_writes_the_named_file():
    prototypes.generate("etf", 10, 9, 0)
    assert [path.name for path in _cached_files()] == ["etf_K10_d9_s0_59a025313827859b.npz"]
