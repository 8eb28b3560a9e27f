"""``protobench compare``: the table with its verdicts, --json, and the one-line errors."""

import json

import pytest

from protobench.results import cell_path, write_record

SUITE = "cmp-s"  # not a shipped suite: columns come from the records
B_VALUES = [70.0, 80.0, 90.0, 75.0, 85.0]


def write(root, method, seed, acc, dim=2, status="ok", **extra):
    record = {
        "suite": SUITE, "method": method, "dim": dim, "seed": seed, "column": str(dim), "status": status,
        "setting_hash": "s1", "finished_at": "2026-01-01T00:00:00", "config": {"train": {"epochs": 3}},
        "metrics": {"test_accuracy": acc, "test_accuracy_at_best_val": acc}, **extra,
    }  # fmt: skip
    write_record(cell_path(root, SUITE, method, dim, seed, None, f"{method}{seed}{dim}".ljust(10, "0")), record)


@pytest.fixture
def store(tmp_path):
    """dl2pa = softmax + 0.5 seed by seed at d=2 (paired: dl2pa better); etf n/a at d=2; d=4 a tie."""
    root = tmp_path / "res"
    for seed, b in enumerate(B_VALUES):
        write(root, "softmax", seed, b)
        write(root, "dl2pa", seed, b + 0.5 + 0.01 * (seed % 2))
        write(root, "softmax", seed, 80.0 + seed, dim=4)
        write(root, "dl2pa", seed, 80.0 + (seed * 3) % 5, dim=4)  # 80, 83, 81, 84, 82: diffs 0,2,-1,1,-2
    write(root, "etf", 0, None, status="n/a", reason="needs d >= K-1")
    return root


def test_compare_prints_the_table_with_verdicts(run_cli, store):
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax,etf", "--results", store)
    assert code == 0, err
    assert "dl2pa better" in out and "no evidence" in out and "etf: n/a" in out
    assert "paired t (n=5), sign-flip p" in out and "0.0625" in out
    assert "Paired t on per-seed differences" in out and "No correction for multiple comparisons" in out
    assert "n/a: etf at 2: needs d >= K-1" in out


def test_compare_json_holds_the_rows(run_cli, store):
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax,etf", "--results", store, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["a"] == "dl2pa" and answer["b"] == ["softmax", "etf"] and answer["metric_key"] == "test_accuracy"
    rows = {(r["b"], r["column"]): r for r in answer["rows"]}
    assert set(rows) == {("softmax", "2"), ("softmax", "4"), ("etf", "2"), ("etf", "4")}
    paired = rows["softmax", "2"]
    assert paired["verdict"] == "dl2pa better" and paired["p_sign_flip"] == 0.0625 and paired["ci_low"] > 0
    assert rows["softmax", "4"]["verdict"] == "no evidence" and rows["softmax", "4"]["diff"] == 0.0
    assert rows["etf", "2"]["verdict"] == "etf: n/a" and rows["etf", "2"]["diff"] is None
    assert rows["etf", "4"]["verdict"] == "etf: missing"
    code, out, _ = run_cli(
        "compare", SUITE, "dl2pa", "softmax", "--results", store, "--json", "--metric", "val-selected"
    )
    assert code == 0 and json.loads(out)["metric_key"] == "test_accuracy_at_best_val"


def test_compare_errors_are_one_line(run_cli, store, tmp_path):
    for args, message in (
        ([SUITE, "dl2pa", "softmax", "--metric", "best"], "--metric 'best' is unknown; use one of final, val-selected"),
        ([SUITE, "dl2pa", "softmx"], "method 'softmx' has no records of suite cmp-s"),
        ([SUITE, "dl2pa", "softmx"], "(did you mean 'softmax'?); methods there: dl2pa, etf, softmax"),
        ([SUITE, "hpn", "softmax"], "method 'hpn' has no records"),
        ([SUITE, "dl2pa", "softmax,dl2pa"], "A 'dl2pa' is also among B"),
        ([SUITE, "dl2pa", ","], "give at least one method B"),
        (["other", "dl2pa", "softmax"], "no records of suite other under"),
    ):
        code, out, err = run_cli("compare", *args, "--results", store)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (args, err)
    code, _, err = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", tmp_path / "nowhere")
    assert code == 2 and err.startswith("error: --results") and "does not exist" in err
