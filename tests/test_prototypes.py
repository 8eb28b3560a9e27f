"""Prototype generators reach the known optima; caching, determinism and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protobench import prototypes
from protobench.errors import UserError


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PROTOBENCH_CACHE", str(tmp_path / "cache"))


def gen(kind: str, K: int, d: int, seed: int = 0, **params) -> torch.Tensor:
    P = prototypes.generate(kind, K, d, seed, use_cache=False, device="cpu", **params)
    assert P.shape == (K, d) and P.dtype == torch.float32 and P.device.type == "cpu"
    assert torch.allclose(P.norm(dim=1), torch.ones(K), atol=1e-6)
    return P


@pytest.mark.parametrize("kind", ["uniform", "etf"])
@pytest.mark.parametrize(("K", "d"), [(10, 9), (5, 16), (3, 2)])
def test_simplex_when_k_at_most_d_plus_1(kind, K, d):
    P = gen(kind, K, d)
    cos = P.double() @ P.double().T
    off = cos[~torch.eye(K, dtype=torch.bool)]
    # Every pair, not only the max: the regular simplex is equiangular.
    assert off.max().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert off.min().item() == pytest.approx(-1 / (K - 1), abs=1e-4)
    assert prototypes.metrics(P).simplex_gap < 1e-4


@pytest.mark.parametrize(("K", "d"), [(6, 3), (10, 5)])
def test_hpn_cross_polytope_when_k_is_2d(K, d):
    m = prototypes.metrics(gen("hpn", K, d))
    assert m.max_cosine <= 1e-3
    assert m.min_angle_deg == pytest.approx(90.0, abs=0.1)


@pytest.mark.parametrize("kind", ["uniform", "hpn"])
def test_regular_polygon_in_2d(kind):
    P = gen(kind, 7, 2)
    m = prototypes.metrics(P)
    assert m.min_angle_deg == pytest.approx(360 / 7, abs=0.5)
    # Regular: every gap between consecutive points is 360/7, not only the smallest.
    angles = np.sort(np.degrees(np.arctan2(P[:, 1].numpy(), P[:, 0].numpy())))
    gaps = np.diff(np.append(angles, angles[0] + 360))
    assert np.allclose(gaps, 360 / 7, atol=0.5)


@pytest.mark.parametrize(
    ("K", "angle"), [(4, math.degrees(math.acos(-1 / 3))), (6, 90.0), (12, math.degrees(math.atan(2)))]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_hpn_platonic_solids_in_3d(K, angle, seed):
    m = prototypes.metrics(gen("hpn", K, 3, seed))
    assert m.min_angle_deg == pytest.approx(angle, abs=0.5)
    assert m.mean_nn_angle_deg == pytest.approx(angle, abs=0.5)


def test_uniform_cross_polytope_and_t_parameter():
    m = prototypes.metrics(gen("uniform", 8, 4))
    assert m.max_cosine <= 1e-3
    # t changes the optimum when K > 2d (softer/harder potential), and the cache key.
    a, b = gen("uniform", 30, 3, t=2.0), gen("uniform", 30, 3, t=10.0)
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize(("K", "d"), [(10, 16), (20, 20)])
def test_ebv_near_orthogonal_when_d_at_least_k(K, d):
    P, info = prototypes.generate_with_info("ebv", K, d, use_cache=False, device="cpu")
    assert prototypes.metrics(P).max_abs_cosine <= 0.002 + 1e-6
    assert info.params["tau_used"] == 0.002 and not info.notes


def test_ebv_loosens_tau_when_d_below_k():
    K, d = 30, 10
    P, info = prototypes.generate_with_info("ebv", K, d, use_cache=False, device="cpu")
    reached = prototypes.metrics(P).max_abs_cosine
    tau = info.params["tau_used"]
    welch = math.sqrt((K - d) / (d * (K - 1)))
    assert tau > 0.002 and reached <= tau + 1e-6
    assert welch <= reached <= 1.25 * welch  # near the Welch bound, not just "anything"
    assert any("loosened" in note for note in info.notes)
    # An explicit, reachable tau is honoured without loosening.
    P2, info2 = prototypes.generate_with_info("ebv", K, d, tau=0.5, use_cache=False, device="cpu")
    assert prototypes.metrics(P2).max_abs_cosine <= 0.5 and info2.params["tau_used"] == 0.5


def test_etf_needs_d_at_least_k_minus_1():
    with pytest.raises(UserError, match=r"^ETF needs d >= K-1 \(K=10, d=8\)$"):
        prototypes.generate("etf", 10, 8)


@pytest.mark.parametrize("kind", prototypes.GENERATORS)
def test_deterministic_per_seed_and_seeds_differ(kind):
    a, b = gen(kind, 5, 4, seed=3), gen(kind, 5, 4, seed=3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, gen(kind, 5, 4, seed=4), atol=1e-3)


def test_cache_hit_does_not_recompute(monkeypatch, tmp_path):
    first = prototypes.generate("uniform", 12, 5, seed=1)
    files = list((tmp_path / "cache" / "prototypes").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(prototypes, "_sphere_minimise", boom)
    second, info = prototypes.generate_with_info("uniform", 12, 5, seed=1)
    assert info.cached and torch.equal(first, second)
    # A different key (t) is a miss, so it does reach the (now broken) optimiser.
    with pytest.raises(AssertionError, match="recomputed"):
        prototypes.generate("uniform", 12, 5, seed=1, t=3.0)
    # use_cache=False ignores the file.
    with pytest.raises(AssertionError, match="recomputed"):
        prototypes.generate("uniform", 12, 5, seed=1, use_cache=False)


def test_damaged_cache_file_is_recomputed(tmp_path):
    first = prototypes.generate("hpn", 5, 3)
    (path,) = (tmp_path / "cache" / "prototypes").iterdir()
    path.write_bytes(b"garbage")
    assert torch.equal(prototypes.generate("hpn", 5, 3), first)


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (("uniform", 1, 4), {}, "at least 2 classes"),
        (("uniform", 4, 1), {}, "d >= 2"),
        (("nope", 4, 4), {}, "unknown prototype generator 'nope'"),
        (("uniform", 4, 4), {"tau": 0.1}, "unknown parameter"),
        (("etf", 4, 4), {"t": 2.0}, "allowed: none"),
        (("uniform", 4, 4), {"t": -1.0}, "t must be a positive number"),
        (("uniform", 4.5, 4), {}, "must be an integer"),
    ],
)
def test_bad_input_is_user_error(args, params, message):
    with pytest.raises(UserError, match=message):
        prototypes.generate(*args, **params)


def test_metrics_values():
    square = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    m = prototypes.metrics(square)
    assert m.max_cosine == pytest.approx(0.0, abs=1e-12)
    assert m.min_angle_deg == pytest.approx(90.0)
    assert m.mean_nn_angle_deg == pytest.approx(90.0)
    assert m.max_abs_cosine == pytest.approx(1.0)
    assert m.simplex_bound == pytest.approx(-1 / 3)
    assert m.simplex_gap == pytest.approx(1 / 3)
    # log(mean over the 6 pairs of exp(-2 ||p_i - p_j||^2)): 4 pairs at distance^2 2, 2 at 4.
    assert m.uniformity_energy == pytest.approx(math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6))
    assert set(m.as_dict()) == {
        "max_cosine", "min_angle_deg", "mean_nn_angle_deg", "uniformity_energy",
        "max_abs_cosine", "simplex_bound", "simplex_gap",
    }  # fmt: skip
    # A torch tensor gives the same numbers.
    assert prototypes.metrics(torch.tensor(square, dtype=torch.float32)).max_cosine == pytest.approx(0, abs=1e-7)


def test_uniform_gradient_matches_autograd():
    K, t = 7, 2.0
    X = torch.nn.functional.normalize(torch.randn(K, 4, dtype=torch.float64), dim=1).requires_grad_()
    (K * prototypes._uniform_energy(X @ X.T, t)).backward()
    eye = torch.eye(K, dtype=torch.bool)
    logits = (-t * (2 - 2 * (X @ X.T))).masked_fill(eye, -math.inf)
    W = torch.softmax(logits.flatten(), 0).view(K, K)
    assert torch.allclose(X.grad, 4 * t * K * (W @ X).detach(), atol=1e-12)
