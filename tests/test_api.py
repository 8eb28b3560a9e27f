"""The Python API (protobench/api.py, docs/api.md): docs/api.md's worked example runs on the committed
results, `import protobench` stays light, and `pb.compare` / `pb.report` hold what the commands print."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest

import protobench as pb
from protobench.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_the_worked_example_of_docs_api_md_runs(tmp_path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) == 3, "docs/api.md's example is three python blocks, run in order"
    (tmp_path / "results").symlink_to(ROOT / "results")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "accuracy-vs-d.png").stat().st_size > 10_000
    assert len(namespace["both"]) == 29  # the example's own asserts compared every finished cell
    assert namespace["rows"].attrs["family_size"] == 16


def test_importing_protobench_imports_neither_pandas_nor_torch() -> None:
    code = "import sys, protobench; print(sorted(m for m in ('pandas', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_functions_are_typed_and_documented() -> None:
    for name in pb.API:
        function = getattr(pb, name)
        hints = typing.get_type_hints(function)
        assert hints["return"] is pd.DataFrame and function.__doc__, name
    assert "suite" in typing.get_type_hints(pb.load_results)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pb.nothing  # noqa: B018


def test_compare_holds_what_the_command_prints(run_cli) -> None:
    rows = pb.compare("fashion-mnist-tuned", "dl2pa", "softmax,hpn", ROOT / "results")
    code, out, _ = run_cli("compare", "fashion-mnist-tuned", "dl2pa", "softmax,hpn", "--results",
                           ROOT / "results", "--json")  # fmt: skip
    printed = json.loads(out)
    assert code == 0 and rows.to_dict("records") == printed["rows"]
    assert rows.attrs["notes"] == printed["notes"] and rows.attrs["family_size"] == printed["family_size"] == 8


def test_report_holds_what_the_command_prints(run_cli) -> None:
    cells = pb.report("fashion-mnist-tuned", ROOT / "results", metric="final")
    code, out, _ = run_cli("report", "fashion-mnist-tuned", "--results", ROOT / "results", "--metric", "final",
                           "--format", "csv")  # fmt: skip
    assert code == 0
    dl2pa = cells[(cells["method"] == "dl2pa") & (cells["column"] == "2")].iloc[0]
    assert dl2pa["n"] == 5 and f"{dl2pa['mean']:.2f} +- {dl2pa['std']:.2f}" == "51.96 +- 3.30"
    assert list(cells.attrs["titles"]) == [("fashion-mnist-tuned", "test_accuracy")]
    printed = pd.read_csv(io.StringIO(out), dtype={"column": str})
    assert len(printed) == len(cells) and printed["method"].tolist() == cells["method"].tolist()
    assert (printed["mean"] - cells["mean"].astype(float)).abs().max() < 1e-4  # the csv prints 4 decimals
    assert printed["n"].tolist() == cells["n"].tolist()


def test_bad_input_is_one_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="suite 'nope' has no records under .*; suites there: "):
        pb.load_results(ROOT / "results", "nope")
    with pytest.raises(UserError, match=r"column 'acuracy' is unknown"):
        pb.load_results(ROOT / "results", "quickstart", columns=["suite", "acuracy"])
    with pytest.raises(UserError, match="does not exist"):
        pb.load_results(tmp_path / "nowhere")
    with pytest.raises(UserError, match="table 'rows' is unknown"):
        pb.load_results(ROOT / "results", "quickstart", table="rows")  # type: ignore[arg-type]
