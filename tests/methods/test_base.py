"""The method contract's shared rules: registration, options and their defaults, loss families."""

from __future__ import annotations

import pytest

from protobench.errors import UserError
from protobench.methods import METHODS, create_method
from protobench.methods.base import LOSS_FAMILIES, check_loss_family, check_options, resolved_options


def test_registration_names_the_class() -> None:
    for name in METHODS:
        assert METHODS.get(name).method_name == name


def test_check_loss_family() -> None:
    for family in LOSS_FAMILIES:
        check_loss_family("m", family)
    with pytest.raises(UserError, match="long-tailed"):
        check_loss_family("m", "longtail")


def test_defaults_are_the_only_source_of_default_values() -> None:
    # Every head builds from its documented defaults alone, and records exactly them.
    for name in METHODS:
        method = create_method(name, 10, 16, seed=0)
        assert method.hyperparameters() == METHODS.get(name).defaults


def test_init_states_no_defaults_of_its_own() -> None:
    # A head built without create_method must be given its options: no second copy of a default.
    for name in ("dl2pa", "dnc", "ebv", "softmax", "hpn-dynamic"):
        with pytest.raises(TypeError):
            METHODS.get(name)(10, 16)


def test_unknown_option_is_one_error_naming_the_allowed_ones() -> None:
    with pytest.raises(UserError, match=r"method 'dl2pa' has no option 'tt'; allowed: momentum, t"):
        create_method("dl2pa", 4, 3, tt=1.0)
    with pytest.raises(UserError, match=r"^suite.yaml: method 'hpn' has no option 'x'; allowed: none$"):
        check_options("hpn", {"x": 1}, where="suite.yaml")
    assert resolved_options("dl2pa", {"t": 3.0}) == {"t": 3.0, "momentum": 0.9}
