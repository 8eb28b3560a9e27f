import pytest

from protobench.core.errors import UserError
from protobench.core.registry import Registry


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


def test_a_dataset_module_is_found_without_a_list(monkeypatch, tmp_path):
    from protobench.data import DATASETS
    from tests.planted import plant

    source = """\
        from protobench.data.base import register_dataset

        @register_dataset("toy-planted", num_classes=3, image_shape=(1, 4, 4), locate=lambda request: None,
                          how_to_get="nowhere")
        def build(request):
            raise NotImplementedError
        """
    plant(monkeypatch, tmp_path / "data", "protobench.data", DATASETS, "toy_planted.py", source)
    assert DATASETS.get("toy-planted").num_classes == 3 and DATASETS.names()[-1] == "toy-planted"
    assert not DATASETS.broken


@pytest.mark.parametrize(
    ("source", "line", "error"),
    [
        ("x = 1\nimport protobench_no_such\n", 2, "ModuleNotFoundError: No module named 'protobench_no_such'"),
        ("\n\nraise RuntimeError('boom\\n  at import')\n", 3, "RuntimeError: boom at import"),
        ("def f(:\n    pass\n", 1, "SyntaxError: invalid syntax"),
    ],
)
def test_a_module_that_fails_to_import_is_one_line(monkeypatch, tmp_path, capsys, source, line, error):
    from protobench.methods import METHODS
    from tests.planted import plant

    source += '\n@register_method("planted-head")\nclass Head: ...\n'
    path = plant(monkeypatch, tmp_path / "methods", "protobench.methods", METHODS, "planted.py", source)
    where = f"{path} line {line}: {error}"
    assert capsys.readouterr().err == f"warning: {where}; its methods are unavailable\n"
    assert "softmax" in METHODS
    for name in ("planted-head", "planted"):  # the name its register call gives, or its file's
        with pytest.raises(UserError) as raised:
            METHODS.get(name)
        assert str(raised.value) == f"method '{name}' is unavailable: {where}"
    with pytest.raises(UserError, match=rf"unknown method 'other'.*\(not imported, so not searched: {path}\)$"):
        METHODS.get("other")
    METHODS.discover("protobench.methods")  # discovery again: no second warning
    assert capsys.readouterr().err == ""
