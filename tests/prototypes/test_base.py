"""The generator registry: five generators with their defaults, one-line errors for bad requests."""

from __future__ import annotations

import pytest

from protobench import prototypes
from protobench.core.errors import UserError
from protobench.prototypes.base import register_generator
from tests.fresh import run_fresh


def test_registry_lists_the_five_generators_with_their_defaults():
    assert prototypes.GENERATORS == ("uniform", "hpn", "etf", "ebv", "random")
    assert prototypes.generator_names() == list(prototypes.GENERATORS)
    defaults = {name: dict(prototypes.get_generator(name).defaults) for name in prototypes.GENERATORS}
    assert defaults == {
        "uniform": {"t": 2.0, "max_iter": 100000},
        "hpn": {"max_iter": 8000},
        "etf": {},
        "ebv": {"tau": None, "max_iter": 3000},
        "random": {},
    }
    for name in prototypes.GENERATORS:
        generator = prototypes.get_generator(name)
        assert generator.name == name and callable(generator.build) and generator.summary


def test_registry_needs_no_torch():
    # Read-only commands read the registry (names, defaults, summaries, versions, dimension checks) and
    # the set digest; none of it may import torch (protobench/prototypes/__init__.py).
    printed, heavy = run_fresh(
        "from protobench.prototypes import GENERATORS, get_generator, etf_dimension_problem, resolve_params\n"
        "from protobench.prototypes.digest import set_digest\n"
        "gens = [get_generator(g) for g in GENERATORS]\n"
        "print([(g.name, dict(g.defaults), g.version) for g in gens], etf_dimension_problem(5, 3))\n"
        "print(resolve_params('ebv', 4, 4, 0, {}), set_digest([[1.0, 0.0], [0.0, 1.0]])[:8])"
    )
    assert heavy == [] and "ETF needs d >= K-1 (K=5, d=3)" in printed[0]


def test_torch_names_resolve_on_first_use():
    from protobench.prototypes.generation import generate
    from protobench.prototypes.geometry import PrototypeMetrics

    assert prototypes.generate is generate and prototypes.PrototypeMetrics is PrototypeMetrics
    assert all(hasattr(prototypes, name) for name in prototypes.__all__)
    assert prototypes.solver.sphere_minimise and "generate" in dir(prototypes)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        prototypes.nothing  # noqa: B018


def test_defaults_are_read_only_and_names_unique():
    with pytest.raises(TypeError):
        prototypes.get_generator("uniform").defaults["t"] = 3.0  # type: ignore[index]
    with pytest.raises(ValueError, match="twice"):
        register_generator("uniform")(prototypes.get_generator("uniform").build)


def test_unknown_generator_is_one_line_with_did_you_mean():
    with pytest.raises(UserError) as caught:
        prototypes.generate("unifrom", 4, 4)
    assert str(caught.value) == (
        "unknown prototype generator 'unifrom' (did you mean 'uniform'?); allowed: uniform, hpn, etf, ebv, random"
    )


@pytest.mark.parametrize(
    ("kind", "params", "allowed"),
    [("uniform", {"tau": 0.1}, "max_iter, t"), ("ebv", {"t": 2.0}, "max_iter, tau"), ("etf", {"t": 2.0}, "none")],
)
def test_unknown_parameter_names_the_allowed_ones(kind, params, allowed):
    (name,) = params
    message = rf"^unknown parameter\(s\) {name} for '{kind}' prototypes \(allowed: {allowed}\)$"
    with pytest.raises(UserError, match=message):
        prototypes.generate(kind, 4, 4, **params)


def test_resolve_params_fills_defaults_and_drops_unset():
    assert prototypes.resolve_params("uniform", 4, 4, 0, {"t": 3, "max_iter": None}) == {"t": 3.0, "max_iter": 100000}
    assert prototypes.resolve_params("ebv", 4, 4, 0, {}) == {"tau": None, "max_iter": 3000}


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (("uniform", 1, 4), {}, "at least 2 classes"),
        (("uniform", 4, 1), {}, "d >= 2"),
        (("uniform", 4, 4, -1), {}, "seed must be >= 0"),
        (("uniform", 4, 4), {"t": -1.0}, "t must be a positive number"),
        (("uniform", 4, 4), {"t": "hot"}, "t must be a number"),
        (("ebv", 4, 4), {"tau": 1.5}, r"tau must be in \(0, 1\)"),
        (("hpn", 4, 4), {"max_iter": 0}, "max_iter must be a positive integer"),
        (("uniform", 4.5, 4), {}, "must be an integer"),
        (("uniform", 4, True), {}, "must be an integer"),
    ],
)
def test_bad_input_is_user_error(args, params, message):
    with pytest.raises(UserError, match=message):
        prototypes.generate(*args, **params)
