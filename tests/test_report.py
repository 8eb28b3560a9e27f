import pandas as pd
import pytest

from protobench.report import build_tables, render
from protobench.suites import load_suite
from tests.conftest import tiny_suite


def record(method, dim, seed, acc, status="ok", setting="s1", finished="2026-01-01T00:00:00", best=None, **extra):
    return {
        "suite": "s", "method": method, "dim": dim, "seed": seed, "column": str(dim), "status": status,
        "setting_hash": setting, "finished_at": finished, "config": {"train": {"epochs": 3}},
        "metrics": {"test_accuracy": acc, "test_accuracy_at_best_val": best}, **extra,
    }  # fmt: skip


@pytest.fixture
def suite(tmp_path):
    return load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa"], dims=[2, 4])))


def test_mean_std_n_per_method_and_dim(suite):
    records = [record("softmax", 2, s, a) for s, a in enumerate([80.0, 82.0, 84.0])]
    records.append(record("softmax", 4, 0, 90.0))
    (table,) = build_tables(records, {"s": suite})
    text = render([table], "md")
    assert "| method | d=2 | d=4 |" in text
    assert "| softmax | 82.00 +- 2.00 (3) | 90.00 +- 0.00 (1) |" in text
    assert "| dl2pa | - | - |" in text


def test_validation_selected_table_when_present(suite):
    records = [record("softmax", 2, 0, 80.0, best=81.0), record("softmax", 2, 1, 82.0, best=83.0)]
    tables = build_tables(records, {"s": suite})
    assert [t.metric for t in tables] == ["test_accuracy", "test_accuracy_at_best_val"]
    assert "82.00 +- 1.41 (2)" in render(tables[1:], "md")


def test_na_and_error_cells(suite):
    records = [
        record("softmax", 2, 0, 80.0),
        record("dl2pa", 2, 0, None, status="n/a", reason="ETF needs d >= K-1 (K=10, d=2)"),
        record("dl2pa", 4, 0, None, status="error", reason="boom"),
    ]
    text = render(build_tables(records, {"s": suite}), "md")
    assert "| dl2pa | n/a | error |" in text
    assert "n/a: dl2pa at 2: ETF needs d >= K-1" in text


def test_only_the_latest_setting_is_aggregated(suite):
    records = [
        record("softmax", 2, 0, 50.0, setting="old", finished="2026-01-01"),
        record("softmax", 2, 0, 80.0, setting="new", finished="2026-02-01"),
        record("softmax", 2, 1, 82.0, setting="new", finished="2026-02-02"),
    ]
    records[0]["device"], records[1]["device"], records[2]["device"] = "old-gpu", "cpu", "cpu"
    text = render(build_tables(records, {"s": suite}), "md")
    assert "81.00 +- 1.41 (2)" in text and "1 record(s) of older settings" in text
    assert "ran on: cpu (?)" in text and "old-gpu" not in text  # only the devices of what is shown


def test_paper_column_and_delta(tmp_path):
    path = tiny_suite(tmp_path / "p.yaml", methods=["softmax"], dims=[2], paper={"softmax": {2: 81.5}})
    suite = load_suite(str(path))
    records = [dict(record("softmax", 2, 0, 80.0), suite="p")]
    text = render(build_tables(records, {"p": suite}), "md")
    assert "| method | d=2 | d=2 paper | d=2 delta |" in text and "| 81.50 | -1.50 |" in text


def test_csv_and_latex(suite, tmp_path):
    records = [record("softmax", 2, 0, 80.0), record("softmax", 2, 1, 82.0)]
    tables = build_tables(records, {"s": suite})
    csv = tmp_path / "t.csv"
    csv.write_text(render(tables, "csv"))
    frame = pd.read_csv(csv)
    row = frame[(frame.metric == "test_accuracy") & (frame.method == "softmax") & (frame.column == 2)].iloc[0]
    assert row["mean"] == pytest.approx(81.0) and row["n"] == 2
    latex = render(tables, "latex")
    assert "\\begin{tabular}{lrr}" in latex and "81.00 $\\pm$ 1.41 (2)" in latex and "\\bottomrule" in latex


def test_a_table_says_when_its_records_come_from_different_code(suite):
    same = [record("softmax", 2, s, 80.0, git_commit="a" * 40, versions={"protobench": "0.1.0"}) for s in range(2)]
    (table,) = build_tables(same, {"s": suite})
    assert not [n for n in table.notes if "mixed" in n]
    mixed = same + [record("softmax", 4, 0, 90.0, git_commit="b" * 40 + "-dirty", versions={"protobench": "0.2.0"})]
    (table,) = build_tables(mixed, {"s": suite})
    text = render([table], "md")
    assert "_mixed code: records from 2 commits (aaaaaaaaaa, bbbbbbbbbb-dirty)_" in text
    assert "_mixed code: records from protobench versions 0.1.0, 0.2.0_" in text


def test_vs_marks_each_cell_with_its_verdict_against_the_method(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa", "hpn"], dims=[2, 4])))
    spread = [70.0, 80.0, 90.0, 75.0, 85.0]
    records = []
    for seed, base in enumerate(spread):
        records.append(record("dl2pa", 2, seed, base))
        records.append(record("softmax", 2, seed, base + 1.0 + 0.01 * seed))  # better, seed by seed
        records.append(record("hpn", 2, seed, base - 2.0 - 0.01 * seed))  # worse, seed by seed
        records.append(record("dl2pa", 4, seed, 80.0 + seed))
        records.append(record("softmax", 4, seed, 80.0 + (seed * 3) % 5))  # differences 0, 2, -1, 1, -2: a tie
    records += [record("hpn", 4, s, 80.0) for s in range(2)]  # two seeds: no verdict
    (table,) = build_tables(records, {"s": suite}, vs="dl2pa")
    text = render([table], "md")
    assert "| softmax | 81.02 +- 7.91 (5) > | 82.00 +- 1.58 (5) ~ |" in text
    assert "| hpn | 77.98 +- 7.90 (5) < | 80.00 +- 0.00 (2) |" in text
    assert "| dl2pa | 80.00 +- 7.91 (5) | 82.00 +- 1.58 (5) |" in text
    assert any(n.startswith("vs dl2pa: > better, < worse, ~ no evidence") for n in table.notes)
    latex = render([table], "latex")
    assert "(5) $>$" in latex and "(5) $\\sim$" in latex and "(5) $<$" in latex
    (plain,) = build_tables(records, {"s": suite})
    assert " >" not in render([plain], "md")


def test_report_vs_rejects_an_unknown_method(run_cli, tmp_path):
    (tmp_path / "res").mkdir()
    code, _, err = run_cli("report", "--results", tmp_path / "res", "--vs", "dl2pb")
    assert code == 2 and err.count("\n") == 1 and "dl2pa" in err
