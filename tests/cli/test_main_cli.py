import json

from protobench.core.version import __version__
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
    assert rows["dl2pa"]["defaults"] == {"t": 2.0, "momentum": 0.9, "loss": "sq-cos", "tau": 0.1,
                                         "match_every_steps": 0, "match_steps_until_epoch": 1,
                                         "prototype_kind": "uniform"}  # fmt: skip


def test_run_then_report(run_cli, tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "cli.yaml", dims=[2])
    code, out, err = run_cli("run", suite, "--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu")
    assert code == 0, err
    assert "[1/1] softmax d=2 s=0 epoch 2/2" in out and "| softmax | " in out
    assert "Next, try" not in out  # only the quickstart ends with what to try next
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
    # Fashion-MNIST's classes by name in the embedding legend and the per-class heatmap
    assert "p-per-class-accuracy-d2.png" in names
    for name in ("p-embeddings-d2-dl2pa.svg", "p-per-class-accuracy-d2.svg"):
        text = (tmp_path / "plots" / name).read_text()
        assert "T-shirt/top" in text and "Ankle boot" in text and "class 0" not in text, name


def test_quickstart_ends_with_the_commands_to_try_next_and_they_run(run_cli, tmp_path, fmnist_dir):
    """Printed as plain text off a terminal too (the output here is captured); each one works as printed."""
    import shlex

    suite = tiny_suite(tmp_path / "quickstart.yaml", dims=[2], methods=["softmax", "dl2pa"], train={"epochs": 1})
    store = tmp_path / "res"
    code, out, err = run_cli("run", suite, "--results", store, "--data-dir", fmnist_dir, "--device", "cpu")
    assert code == 0, err
    tail = out[out.index("Next, try:") :].splitlines()
    commands = [shlex.split(line) for line in tail if line.startswith("  protobench ")]
    assert [c[1] for c in commands] == ["report", "run", "compare"] and out.index("| softmax |") < out.index("Next")
    page, plots = str(store / "quickstart.html"), str(store / "plots" / "quickstart")
    assert commands[0][2:] == ["quickstart", "--results", str(store), "--format", "html", "--plots", plots, "--out",
                               page]  # fmt: skip
    assert commands[1][-2:] == ["--seeds", "0,1,2"] and "--device" in commands[1]
    assert commands[2][2:] == ["quickstart", "dl2pa", "softmax", "--results", str(store)]
    assert all(line.startswith("  # ") for line in tail[1::2][: len(commands)])  # a comment above each
    for command in commands:
        code, out, err = run_cli(*command[1:])
        assert code == 0, (command, err)
    assert (store / "quickstart.html").is_file()
    rows = json.loads(run_cli(*commands[2][1:], "--json")[1])["rows"]  # after the rerun: 3 seeds, a verdict
    assert rows and all(r["n_a"] == r["n_b"] == 3 and r["verdict"] != "too few seeds" for r in rows)


def test_running_main_again_registers_no_command_twice(run_cli):
    # main() mounts the command groups; run again in one process (as here) it must not add them again,
    # or every later call builds a larger command tree than the last (the test suite slowed to a crawl).
    from protobench.cli.main import app

    run_cli("suites", "--help")
    counts = (len(app.registered_commands), len(app.registered_groups))
    for _ in range(3):
        run_cli("suites", "--help")
    assert (len(app.registered_commands), len(app.registered_groups)) == counts
    assert sorted(g.name for g in app.registered_groups) == ["bench", "data", "prototypes", "results", "suites"]
