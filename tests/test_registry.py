import pytest

from protobench.errors import UserError
from protobench.registry import Registry


def test_register_get_and_names():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha")(1)
    registry.register("beta")(2)
    assert registry.get("beta") == 2
    assert registry.names() == ["alpha", "beta"]
    assert "alpha" in registry and "gamma" not in registry


def test_duplicate_is_rejected():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha")(1)
    with pytest.raises(ValueError, match="twice"):
        registry.register("alpha")(2)


def test_unknown_lists_allowed_and_suggests():
    registry: Registry[int] = Registry("method")
    registry.register("softmax")(1)
    registry.register("dl2pa")(2)
    with pytest.raises(UserError, match=r"unknown method 'dl2pb' \(did you mean 'dl2pa'\?\); allowed: softmax, dl2pa"):
        registry.get("dl2pb")
