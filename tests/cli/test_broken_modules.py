"""A method or dataset module that fails to import costs one warning line and its own entries, not the CLI:
`suites` and `methods` still work, and asking for what it registers is one error line naming its file."""

from __future__ import annotations

import re

from protobench.data import DATASETS
from protobench.methods import METHODS
from tests.conftest import tiny_suite
from tests.planted import plant

BROKEN_METHOD = """\
    from protobench.methods import register_method

    @register_method("mymethod")
    class MyMethod(
    """

BROKEN_DATASET = """\
    from protobench.data.base import register_dataset

    @register_dataset("my-data", num_classes=3, image_shape=(1, 4, 4), locate=lambda r: None, how_to_get="-")
    def build(request) -> None
        return None
    """


def test_a_method_module_with_a_syntax_error(run_cli, monkeypatch, tmp_path) -> None:
    path = plant(monkeypatch, tmp_path / "methods", "protobench.methods", METHODS, "mymethod.py", BROKEN_METHOD)
    code, out, err = run_cli("suites")
    assert code == 0 and "quickstart" in out
    assert re.fullmatch(rf"warning: {re.escape(str(path))} line 4: SyntaxError: .+; its methods are unavailable\n", err)
    code, out, err = run_cli("methods", "--json")
    assert code == 0 and '"softmax"' in out and err == ""  # the warning was printed once, at discovery
    assert run_cli("suites", "show", tiny_suite(tmp_path / "good.yaml"))[0] == 0
    code, _, err = run_cli("suites", "show", tiny_suite(tmp_path / "bad.yaml", methods=["softmax", "mymethod"]))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"key 'methods': method 'mymethod' is unavailable: {path} line 4: SyntaxError: " in err
    family = [{"a": "softmax", "b": "mymethod", "columns": ["2"]}]  # a declared family naming it: the same line
    code, _, err = run_cli("suites", "show", tiny_suite(tmp_path / "family.yaml", family=family))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"key 'family[0]': method 'mymethod' is unavailable: {path} line 4: SyntaxError: " in err


def test_a_dataset_module_with_a_syntax_error(run_cli, monkeypatch, tmp_path) -> None:
    path = plant(monkeypatch, tmp_path / "data", "protobench.data", DATASETS, "my_data.py", BROKEN_DATASET)
    code, out, err = run_cli("methods", "--json")
    assert code == 0 and '"softmax"' in out
    where = re.escape(str(path))
    assert re.fullmatch(rf"warning: {where} line 4: SyntaxError: .+; its datasets are unavailable\n", err)
    code, out, err = run_cli("suites")
    assert code == 0 and "quickstart" in out and err == ""
    code, _, err = run_cli("data", "verify", "my-data")
    assert code == 2
    assert re.fullmatch(rf"error: dataset 'my-data' is unavailable: {where} line 4: SyntaxError: .+\n", err)
