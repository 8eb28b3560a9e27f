"""`protobench prototypes generate/show`: files written, JSON parseable, bad input is a UserError."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from protobench.cli.prototypes import app as prototypes_app
from protobench.core.errors import UserError

root = typer.Typer()
root.add_typer(prototypes_app, name="prototypes")


@root.callback()
def _main() -> None:
    """Test entry point mounting `prototypes` as the real CLI does."""


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PROTOBENCH_CACHE", str(tmp_path / "cache"))


def invoke(*args: str):
    """Run the CLI; a UserError becomes exit code 2 with its line, as protobench's main does."""
    result = CliRunner().invoke(root, ["prototypes", *map(str, args)])
    if isinstance(result.exception, UserError):
        return 2, result.output, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output, ""


def test_generate_writes_unit_rows_and_json(tmp_path):
    out = tmp_path / "p.npy"
    code, output, _ = invoke("generate", "--classes", 10, "--dim", 9, "--method", "etf", "--out", out, "--json")
    assert code == 0
    P = np.load(out)
    assert P.shape == (10, 9)
    assert np.allclose(np.linalg.norm(P, axis=1), 1, atol=1e-6)
    record = json.loads(output)
    assert record["metrics"]["max_cosine"] == pytest.approx(-1 / 9, abs=1e-4)
    assert record["method"] == "etf" and record["classes"] == 10 and record["dim"] == 9


def test_generate_table_and_parameters(tmp_path):
    out = tmp_path / "u.npy"
    code, output, _ = invoke("generate", "-K", 6, "-d", 3, "--t", 5, "--seed", 2, "--out", out)
    assert code == 0 and "min angle" in output and np.load(out).shape == (6, 3)
    code, output, _ = invoke("generate", "-K", 12, "-d", 4, "-m", "ebv", "--tau", 0.6, "--out", out, "--json")
    assert code == 0 and json.loads(output)["metrics"]["max_abs_cosine"] <= 0.6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--classes", 1, "--dim", 4), "at least 2 classes"),
        (("--classes", 4, "--dim", 1), "d >= 2"),
        (("--classes", 10, "--dim", 5, "--method", "etf"), r"ETF needs d >= K-1 \(K=10, d=5\)"),
        (("--classes", 4, "--dim", 4, "--method", "spiral"), "unknown prototype generator 'spiral'"),
        (("--classes", 4, "--dim", 4, "--method", "unifrom"), r"\(did you mean 'uniform'\?\); allowed: uniform, hpn"),
        (("--classes", 4, "--dim", 4, "-m", "ebv", "--t", 2), "--t applies to the uniform generator only, not 'ebv'"),
        (("--classes", 4, "--dim", 4, "--tau", 0.1), "--tau applies to the ebv generator only"),
    ],
)
def test_generate_bad_input_is_user_error(tmp_path, args, message):
    out = tmp_path / "p.npy"
    code, _, error = invoke("generate", *args, "--out", out)
    assert code == 2
    assert error.count("\n") == 0
    assert re.search(message, error)
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing/p.npy", ".", "p.txt"])
def test_generate_unwritable_out_fails_before_computing(tmp_path, monkeypatch, where):
    from protobench import prototypes

    def boom(*args, **kwargs):
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(prototypes, "generate_with_info", boom)
    code, _, error = invoke("generate", "--classes", 4, "--dim", 4, "--out", tmp_path / where)
    assert code == 2 and "--out" in error


def test_generate_non_integer_classes_is_usage_error(tmp_path):
    code, _, _ = invoke("generate", "--classes", "ten", "--dim", 4, "--out", tmp_path / "p.npy")
    assert code == 2


def test_show_plot_writes_png(tmp_path):
    """The figures themselves: tests/reporting/test_prototype_plots.py."""
    png = tmp_path / "plot.png"
    code, output, _ = invoke("show", "--classes", 7, "--dim", 2, "--method", "hpn", "--plot", png)
    assert code == 0, output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max cosine" in output and f"plot written to {png}" in output.replace("\n", "")


def test_show_reads_a_file(tmp_path):
    out = tmp_path / "p.npy"
    assert invoke("generate", "-K", 5, "-d", 4, "-m", "etf", "--out", out)[0] == 0
    code, output, _ = invoke("show", out, "--json")
    assert code == 0
    assert json.loads(output)["metrics"]["max_cosine"] == pytest.approx(-0.25, abs=1e-5)


def test_show_rejects_non_prototype_files(tmp_path):
    """Each refusal: tests/prototypes/test_files.py; here, that one reaches the user as a UserError."""
    path = tmp_path / "bad.npy"
    np.save(path, np.ones((4, 3)))
    code, _, error = invoke("show", path)
    assert code == 2 and "unit vectors" in error


def test_show_needs_file_or_shape(tmp_path):
    assert invoke("show")[0] == 2
    assert invoke("show", tmp_path / "none.npy")[0] == 2
