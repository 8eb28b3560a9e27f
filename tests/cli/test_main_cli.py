import json

import pytest

from protobench import __version__
from tests.conftest import tiny_suite


def test_version_and_help(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"protobench {__version__}"
    for command in ("run", "report", "suites", "prototypes", "data"):
        code, out, _ = run_cli(command, "--help")
        assert code == 0 and "Usage" in out


def test_run_help_explains_every_option(run_cli):
    _, out, _ = run_cli("run", "--help")
    for flag in (
        "--methods",
        "--dims",
        "--seeds",
        "--epochs",
        "--device",
        "--results",
        "--data-dir",
        "--deterministic",
        "--cuda-graphs",
        "--no-cuda-graphs",
    ):
        assert flag in out


def test_suites_json(run_cli):
    code, out, _ = run_cli("suites", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["quickstart"]["dims"] == [2, 3, 16] and rows["quickstart"]["classes"] == 10
    code, out, _ = run_cli("suites")
    assert code == 0 and "quickstart" in out and "fashion-mnist" in out


def test_suites_balance_covers_long_tailed_datasets(run_cli):
    code, out, _ = run_cli("suites", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["imagenet-lt"]["balance"] == "long-tailed (dataset)"
    assert rows["imagenet-lt"]["classes"] == 1000 and rows["imagenet"]["balance"] == "balanced"
    assert rows["cifar100-lt"]["balance"].startswith("long-tailed ") and rows["cifar100-lt"]["classes"] == 100
    assert rows["cifar100"]["balance"] == "balanced" and rows["cifar100"]["classes"] == 100


def test_methods_lists_defaults(run_cli):
    code, out, _ = run_cli("methods", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) >= {"softmax", "etf", "hpn", "ebv", "dnc", "dl2pa", "dl2pa-static", "hpn-dynamic"}
    assert rows["dl2pa"]["defaults"] == {"t": 2.0, "momentum": 0.9}


def test_run_then_report(run_cli, tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "cli.yaml", dims=[2])
    code, out, err = run_cli("run", suite, "--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu")
    assert code == 0, err
    assert "[1/1] softmax d=2 s=0 epoch 2/2" in out and "| softmax | " in out
    (record_path,) = (tmp_path / "res").rglob("*.json")
    assert json.loads(record_path.read_text())["cuda_graphs"] is False  # a CPU step is never graph-replayed
    code, out, _ = run_cli("run", suite, "--results", tmp_path / "res", "--data-dir", fmnist_dir)
    assert "1 already finished" in out and "0 trained, 1 skipped" in out
    code, out, _ = run_cli("report", "cli", "--results", tmp_path / "res", "--format", "csv")
    assert code == 0 and out.startswith("suite,metric,method,column,mean,std,n")
    code, _, err = run_cli("report", "cli", "--results", tmp_path / "res", "--device", "H100")
    assert code == 2 and "no finished results for cli" in err  # this run was on the CPU
    code, out, _ = run_cli("report", "cli", "--results", tmp_path / "res", "--device", "cpu")
    assert code == 0 and "ran on: cpu" in out
    target = tmp_path / "out" / "table.tex"
    code, out, _ = run_cli("report", "--results", tmp_path / "res", "--format", "latex", "--out", target)
    assert code == 0 and "\\begin{tabular}" in target.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
        (["run", "quickstart", "--methods", "softmx"], "unknown method 'softmx' (did you mean 'softmax'?)"),
        (["run", "quickstart", "--dims", "1"], "dim 1 is out of range; use 2 <= dim <= 4096"),
        (["run", "quickstart", "--dims", "5000"], "dim 5000 is out of range"),
        (["run", "quickstart", "--dims", "two"], "--dims 'two' is not a comma-separated list of ints"),
        (["run", "quickstart", "--epochs", "0"], "epochs is 0; use epochs >= 1"),
        (["run", "quickstart", "--device", "tpu"], "--device 'tpu' is not a device"),
        (["run", "quickstart", "--data-dir", "/nonexistent/x"], "--data-dir /nonexistent/x is not a folder"),
        (["report", "--format", "xls"], "--format 'xls' is unknown; use one of md, csv, latex"),
        (["report", "--results", "/nonexistent/r"], "--results /nonexistent/r does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err + out


def test_unreadable_yaml_exit_2(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dims: [2,\n")
    code, _, err = run_cli("run", bad)
    assert code == 2 and "bad.yaml" in err and err.count("\n") == 1


def test_missing_data_exit_2(run_cli, tmp_path, monkeypatch):
    import torchvision.datasets

    from protobench.data import fashion_mnist

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli("run", tiny_suite(tmp_path / "m.yaml"), "--data-dir", empty, "--results", tmp_path / "r")
    assert code == 2 and "fashion-mnist data not found" in err and str(empty) in err
    assert err.count("\n") == 1


def test_report_plots_writes_png_and_svg_and_html_inlines_them(run_cli, tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "p.yaml", dims=[2], methods=["softmax", "dl2pa"], train={"epochs": 1})
    common = ["--results", tmp_path / "res"]
    assert run_cli("run", suite, *common, "--data-dir", fmnist_dir, "--device", "cpu")[0] == 0
    code, _, err = run_cli("report", "p", *common, "--plots", tmp_path / "plots", "--format", "html",
                           "--out", tmp_path / "r.html")  # fmt: skip
    assert code == 0, err
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"p-accuracy-vs-dim.png", "p-accuracy-vs-dim.svg", "p-embeddings-d2-dl2pa.png"} <= names
    html = (tmp_path / "r.html").read_text()
    assert html.count('src="data:image/png;base64,') == len([n for n in names if n.endswith(".png")])
