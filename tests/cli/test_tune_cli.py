"""``protobench tune``: the refusal, the written suite, and a run of it that trains with the chosen lr."""

import json

import yaml

from protobench.store.records import iter_records
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite


def test_tune_flag_errors_are_one_line(run_cli, tmp_path):
    suite = tiny_suite(tmp_path / "s.yaml")
    for args, message in (
        ([], "give a grid to tune"),
        (["--lr", "0.01", "--out", tmp_path / "t.txt"], "give a .yaml file name"),
        (["--lr", "0.01", "--out", suite], "is the suite being tuned"),
        (["--lr", "0.01", "--methods", "softmx"], "did you mean 'softmax'"),
    ):
        code, _, err = run_cli("tune", suite, *args, "--results", tmp_path / "res")
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)


def test_tune_writes_a_suite_that_run_trains_with_the_chosen_lr(run_cli, tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "s.yaml", dims=[2], methods=["softmax", "dl2pa"])
    out = tmp_path / "s-tuned.yaml"
    common = ["--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu"]
    code, text, err = run_cli("tune", suite, "--lr", "0.001,0.05", "--epochs", "1", "--seeds", "0",
                              "--out", out, "--json", *common)  # fmt: skip
    assert code == 0, err
    answer = json.loads(text)
    chosen = {m: v["chosen"]["lr"] for m, v in answer["methods"].items()}
    assert set(chosen) == {"softmax", "dl2pa"} and answer["tuning_suite"] == "s-tune"
    for method, entry in answer["methods"].items():  # the chosen lr is the best validation mean
        best = max(entry["trials"], key=lambda t: t["val_mean"])
        assert best["lr"] == chosen[method]
    written = out.read_text()
    assert written.startswith("# Recipes chosen on validation by: protobench tune ")
    assert "--lr 0.001,0.05" in written and "# Grid: lr=0.001, lr=0.05" in written and "# Rule: per method" in written
    assert yaml.safe_load(written)["include"] == "s.yaml"
    tuned = load_suite(str(out))
    assert tuned.name == "s-tuned" and {m: tuned.recipe_for(m).lr for m in chosen} == chosen

    code, _, err = run_cli("run", out, "--methods", "softmax,dl2pa", "--epochs", "1", *common)
    assert code == 0, err
    records = [r for r in iter_records(tmp_path / "res", ["s-tuned"]) if r["status"] == "ok"]
    assert {r["method"]: r["config"]["train"]["lr"] for r in records} == chosen


def test_tune_prints_a_table_with_the_choice_marked(run_cli, tmp_path, fmnist_dir):
    # Each grid point's two seeds packed: tuning cells are plain cells of the SUITE-tune suite.
    suite = tiny_suite(tmp_path / "s.yaml", dims=[2], seeds=[0, 1])
    code, out, err = run_cli("tune", suite, "--lr", "0.001,0.05", "--epochs", "1", "--results", tmp_path / "res",
                             "--data-dir", fmnist_dir, "--device", "cpu", "--pack", "2")  # fmt: skip
    assert code == 0, err
    assert out.count("training 2 cells together") == 2
    assert "final-epoch validation accuracy" in out and "lr=0.001" in out and "lr=0.05" in out
    row = next(line for line in out.splitlines() if "softmax" in line and "+-" in line)  # the table's row
    assert row.count("*") == 1


def test_tune_methods_writes_a_suite_of_those_methods_and_warns_at_a_grid_edge(run_cli, tmp_path, fmnist_dir):
    """`tune --methods X --out F`: F trains X (its own `methods:`), the next step says so, and a choice at the
    grid's edge is a warning on stderr, in --json mode too."""
    suite = tiny_suite(tmp_path / "s.yaml", dims=[2], methods=["softmax", "dl2pa"])
    out = tmp_path / "s-tuned.yaml"
    common = ["--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu", "--epochs", "1"]
    code, text, err = run_cli("tune", suite, "--methods", "dl2pa", "--lr", "0.001,0.05", "--out", out, *common)
    assert code == 0, err
    written = load_suite(str(out))
    assert list(written.methods) == ["dl2pa"]
    chosen = written.recipe_for("dl2pa").lr
    assert f"`protobench run {out}` trains dl2pa (lr {chosen:g}) at d = 2, seeds 0, 2 epoch(s)" in text  # its epochs
    side = "smallest" if chosen == 0.001 else "largest"
    edge = "warning: at the grid's edge, so the best may lie beyond it (extend the grid)"
    assert err == f"{edge}: dl2pa lr={chosen:g} (the {side})\n"
    code, text, err = run_cli("tune", suite, "--methods", "dl2pa", "--lr", "0.001,0.05", "--json", *common)
    assert code == 0 and json.loads(text)["methods"]["dl2pa"] and err.count("warning: at the grid's edge") == 1
