"""The degenerate-set warning, the temperature t of uniform prototypes, and the unchanged default sets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from protobench import prototypes
from protobench.methods import prototype_request as method_prototype_request
from protobench.prototypes.degeneracy import degeneracy_warning, min_angle_deg

#: sha256 prefixes of the float32 sets before the uniform cap was raised (seed 0), checked bit for bit.
DEFAULT_SETS = {
    ("uniform", 10, 2): "7b7aafbf3f9445a8",
    ("uniform", 10, 3): "02da83ba7ad12d74",
    ("uniform", 10, 16): "46f2b6981456fe47",
    ("hpn", 10, 3): "d7ab9dcc3234e401",
}


@pytest.mark.parametrize(("kind", "K", "d"), sorted(DEFAULT_SETS))
def test_default_sets_unchanged(kind: str, K: int, d: int) -> None:
    P = prototypes.generate(kind, K, d, 0, use_cache=False, device="cpu")
    assert hashlib.sha256(P.numpy().tobytes()).hexdigest()[:16] == DEFAULT_SETS[(kind, K, d)]


def test_larger_t_spreads_the_closest_pair() -> None:
    soft = prototypes.generate("uniform", 20, 3, 0, use_cache=False, device="cpu", t=2.0)
    sharp = prototypes.generate("uniform", 20, 3, 0, use_cache=False, device="cpu", t=10.0)
    assert min_angle_deg(sharp) > min_angle_deg(soft) + 1.0


def test_warning_on_a_collapsed_set_only() -> None:
    good = prototypes.generate("uniform", 10, 2, 0, device="cpu")
    assert degeneracy_warning(good, "uniform") is None
    bad = good.numpy().copy()
    bad[1] = bad[0] + 0.01 * bad[2]  # two prototypes almost on top of each other
    text = degeneracy_warning(bad / np.linalg.norm(bad, axis=1, keepdims=True), "uniform")
    assert text is not None and "HPN" in text and "36.00 deg" in text


def test_hpn_never_stacks_prototypes() -> None:
    # HPN's objective mean_i max_j cos_ij is lower for five prototypes stacked on a hexagon's vertex (0.75)
    # than for the regular decagon (0.81); from seed 4 the sharper stages used to reach that stack.
    P = prototypes.generate("hpn", 10, 2, 4, use_cache=False, device="cpu")
    assert min_angle_deg(P) == pytest.approx(36.0, abs=0.01)


def test_method_prototype_request() -> None:
    assert method_prototype_request("dl2pa", {"t": 5.0}) == ("uniform", {"t": 5.0})
    assert method_prototype_request("hpn-dynamic", {}) == ("hpn", {})
    assert method_prototype_request("softmax", {}) is None
    # A head whose generator is an option: the option's generator, with only that generator's parameters.
    assert method_prototype_request("dl2pa-static", {"prototype_kind": "random", "t": 5.0}) == ("random", {})
    assert method_prototype_request("dl2pa", {"prototype_kind": "hpn"}) == ("hpn", {})


def test_cli_generate_warns(run_cli, tmp_path) -> None:
    code, _, err = run_cli("prototypes", "generate", "-K", "10", "-d", "2", "-m", "ebv", "-o", tmp_path / "e.npy")
    assert code == 0 and err.count("warning: ") == 1 and "below half of the HPN" in err
    code, _, err = run_cli("prototypes", "generate", "-K", "10", "-d", "2", "-o", tmp_path / "u.npy")
    assert code == 0 and "warning" not in err
    code, _, err = run_cli("prototypes", "show", tmp_path / "e.npy")
    assert code == 0 and "warning: " in err
