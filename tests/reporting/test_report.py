import base64
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from protobench.core.errors import UserError
from protobench.reporting.report import build_tables, render
from protobench.suite.definition import load_suite
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


def test_a_column_no_record_reached_is_named_in_a_note(suite):
    (table,) = build_tables([record("softmax", 2, 0, 80.0)], {"s": suite})
    assert "no records at d=4 (- in every row): the suite has them, none has been run yet" in table.notes
    (table,) = build_tables([record("softmax", 2, 0, 80.0), record("dl2pa", 4, 0, 81.0)], {"s": suite})
    assert not [n for n in table.notes if n.startswith("no records at")]


def test_validation_selected_table_when_present(suite):
    records = [record("softmax", 2, 0, 80.0, best=81.0), record("softmax", 2, 1, 82.0, best=83.0)]
    tables = build_tables(records, {"s": suite})
    assert [t.metric for t in tables] == ["test_accuracy", "test_accuracy_at_best_val"]
    assert "82.00 +- 1.41 (2)" in render(tables[1:], "md")


def test_na_and_error_cells(suite):
    records = [
        record("softmax", 2, 0, 80.0),
        record("dl2pa", 2, 0, None, status="n/a", reason="ETF needs d >= K-1 (K=10, d=2)"),
        record("dl2pa", 4, 0, None, status="error", reason="FloatingPointError: training loss became nan in epoch 3"),
        record("softmax", 4, 0, 70.0),
        record("softmax", 4, 1, None, status="error", reason="CUDA out of memory: tried to allocate 2 GiB"),
    ]
    records[2]["failed_epoch"] = 3
    text = render(build_tables(records, {"s": suite}), "md")
    assert "| dl2pa | n/a | failed (FloatingPointError) |" in text
    assert "n/a: dl2pa at 2: ETF needs d >= K-1" in text
    assert "failed: dl2pa at 4, seed 0, epoch 3: FloatingPointError: training loss became nan in epoch 3" in text
    # A failed seed beside finished ones: the mean is of the finished ones, and the note says so.
    assert "| softmax | 80.00 +- 0.00 (1) | 70.00 +- 0.00 (1) |" in text
    assert "failed: softmax at 4, seed 1: CUDA out of memory: tried to allocate 2 GiB" in text


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
    assert "| method | d=2 | d=2 paper | d=2 delta |" in text and "| 81.50 | -1.50 (n < 3) |" in text


@pytest.mark.parametrize(
    ("paper", "check"),
    [(81.5, "in PI"), (77.0, "in PI"), (91.9, "in PI"), (92.0, "out of PI"), (72.0, "out of PI")],
)
def test_the_delta_says_whether_the_paper_figure_is_in_our_95_percent_prediction_interval(tmp_path, paper, check):
    # 80, 82, 84: mean 82, sd 2, so one new run lies in 82 +- t(0.975, 2) * 2 * sqrt(1 + 1/3) = [72.06, 91.94];
    # 77.0 is outside the interval of the mean (82 +- 4.97) but inside this one: one run varies more than a mean
    path = tiny_suite(tmp_path / "p.yaml", methods=["softmax"], dims=[2], paper={"softmax": {2: paper}})
    records = [dict(record("softmax", 2, s, acc), suite="p") for s, acc in enumerate([80.0, 82.0, 84.0])]
    (table,) = build_tables(records, {"p": load_suite(str(path))})
    text = render([table], "md")
    assert f"| {paper:.2f} | {82.0 - paper:+.2f} ({check}) |" in text
    (note,) = [n for n in table.notes if n.startswith("delta = our mean - paper; (in PI) / (out of PI)")]
    assert "95% prediction interval for one new run of ours (t x s x sqrt(1 + 1/n))" in note
    assert "best test epoch" not in note  # the suite does not say how its figures were chosen
    assert pd.read_csv(io.StringIO(render([table], "csv")))["paper_pi"].tolist() == [check.split()[0]]


def test_the_paper_note_says_when_the_figure_was_chosen_on_test(tmp_path):
    source = "authors' README (ResNet-32; best test epoch of one run)"
    path = tiny_suite(tmp_path / "p.yaml", methods=["softmax"], dims=[2], paper={"softmax": {2: 81.5}},
                      paper_source=source)  # fmt: skip
    records = [dict(record("softmax", 2, s, acc), suite="p") for s, acc in enumerate([80.0, 82.0, 84.0])]
    (table,) = build_tables(records, {"p": load_suite(str(path))})
    assert table.notes[-1].endswith(
        f"; the paper reports one run, selected at its best test epoch ({source}) (docs/compare.md)"
    )
    path = tiny_suite(tmp_path / "p.yaml", methods=["softmax"], dims=[2], paper={"softmax": {2: 81.5}},
                      paper_source="HPN paper (Mettes et al. 2019)")  # fmt: skip
    (table,) = build_tables(records, {"p": load_suite(str(path))})
    assert table.notes[-1].endswith("; the paper's figures: HPN paper (Mettes et al. 2019) (docs/compare.md)")


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
    assert "mixed hosts" not in text


def test_a_table_says_when_its_cpu_records_come_from_different_cpu_models(suite):
    one = [record("softmax", 2, s, 80.0, device="cpu (1 threads)", cpu="CPU A") for s in range(2)]
    legacy = [record("softmax", 4, 0, 90.0, device="cpu (1 threads)")]  # made before the CPU was recorded
    (table,) = build_tables(one + legacy, {"s": suite})
    assert not [n for n in table.notes if "mixed hosts" in n]
    gpu = [record("softmax", 4, 1, 90.0, device="NVIDIA H100", cpu="CPU B")]  # GPU cells don't count
    (table,) = build_tables(one + gpu, {"s": suite})
    assert not [n for n in table.notes if "mixed hosts" in n]
    other = [record("softmax", 4, 2, 90.0, device="cpu (1 threads)", cpu="CPU B")]
    (table,) = build_tables(one + other, {"s": suite})
    assert "mixed hosts: CPU records from 2 CPU models (CPU A; CPU B)" in render([table], "md")


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
    assert any(n.startswith("vs dl2pa: > better, < worse (p adj < 0.05), ~ no evidence") for n in table.notes)
    latex = render([table], "latex")
    assert "(5) $>$" in latex and "(5) $\\sim$" in latex and "(5) $<$" in latex
    (plain,) = build_tables(records, {"s": suite})
    assert " >" not in render([plain], "md")


def holm_store():
    """softmax above dl2pa by 1, 2, 0.5, 1.5, 0.2 at d=2 (paired p = 0.033) and a tie at d=4 (p = 1): better at
    d=2 uncorrected, no evidence once the table's two tests are corrected together."""
    records = []
    for seed, (base, gain) in enumerate(zip([70.0, 80.0, 90.0, 75.0, 85.0], [1.0, 2.0, 0.5, 1.5, 0.2], strict=True)):
        records += [record("dl2pa", 2, seed, base), record("softmax", 2, seed, base + gain)]
        records += [record("dl2pa", 4, seed, 80.0 + seed), record("softmax", 4, seed, 80.0 + (seed * 3) % 5)]
    return records


def test_vs_marks_follow_compares_correction_over_the_tables_cells_and_the_note_names_it(suite):
    from protobench.reporting.comparison import compare

    (table,) = build_tables(holm_store(), {"s": suite}, vs="dl2pa")
    text = render([table], "md")
    assert "| softmax | 81.04 +- 7.57 (5) ~ | 82.00 +- 1.58 (5) ~ |" in text
    rows = compare(holm_store(), "s", "dl2pa", ["softmax"], "final", suite)  # compare's default: Holm
    assert [r.verdict for r in rows] == ["no evidence", "no evidence"]
    assert rows[0].p_value == pytest.approx(0.0334, abs=1e-4) and rows[0].p_adjusted == pytest.approx(0.0667, 1e-3)
    (note,) = [n for n in table.notes if n.startswith("vs dl2pa:")]
    assert note.startswith(
        "vs dl2pa: > better, < worse (p adj < 0.05), ~ no evidence; p adj = p (t) Holm-adjusted over the 2 test(s) "
        "of this table (paired t by seed"
    )
    (plain,) = build_tables(holm_store(), {"s": suite}, vs="dl2pa", correction="none")
    assert "| softmax | 81.04 +- 7.57 (5) > | 82.00 +- 1.58 (5) ~ |" in render([plain], "md")
    (note,) = [n for n in plain.notes if n.startswith("vs dl2pa:")]
    assert "; p adj = p (t) no correction for multiple comparisons (" in note
    (bh,) = build_tables(holm_store(), {"s": suite}, vs="dl2pa", correction="bh")
    assert any("Benjamini-Hochberg-adjusted over the 2 test(s) of this table" in n for n in bh.notes)


def test_vs_without_a_testable_cell_says_so_in_one_note(suite):
    records = [record(m, 2, seed, 80.0 + seed) for m in ("dl2pa", "softmax") for seed in range(2)]
    (table,) = build_tables(records, {"s": suite}, vs="dl2pa")
    (note,) = [n for n in table.notes if "vs dl2pa" in n]
    assert note == (
        "vs dl2pa: no cell has a test (each needs at least 3 seeds of its method and of dl2pa), so none is marked "
        "(docs/compare.md)"
    )
    assert " ~" not in render([table], "md") and "0 test" not in note


def test_report_correction_flag_reaches_the_marks_and_is_checked(run_cli, tmp_path):
    from tests.cli.test_compare_cli import write

    for seed, (base, gain) in enumerate(zip([70.0, 80.0, 90.0, 75.0, 85.0], [1.0, 2.0, 0.5, 1.5, 0.2], strict=True)):
        write(tmp_path / "res", "dl2pa", seed, base, suite="s")
        write(tmp_path / "res", "softmax", seed, base + gain, suite="s")
        write(tmp_path / "res", "dl2pa", seed, 80.0 + seed, dim=4, suite="s")
        write(tmp_path / "res", "softmax", seed, 80.0 + (seed * 3) % 5, dim=4, suite="s")
    args = ("report", "s", "--results", tmp_path / "res", "--metric", "final", "--vs", "dl2pa")
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "| softmax | 81.04 +- 7.57 (5) ~ |" in out and "Holm-adjusted over the 2 test(s) of this table" in out
    code, out, err = run_cli(*args, "--correction", "none")
    assert code == 0, err
    assert "| softmax | 81.04 +- 7.57 (5) > |" in out and "no correction for multiple comparisons" in out
    code, _, err = run_cli(*args, "--correction", "bonferroni")
    assert code == 2 and err.count("\n") == 1 and "--correction 'bonferroni' is unknown" in err
    code, _, err = run_cli(*args[:6], "--correction", "bh")
    assert code == 2 and err.count("\n") == 1 and "give --vs METHOD too" in err


def test_report_vs_rejects_an_unknown_method(run_cli, tmp_path):
    (tmp_path / "res").mkdir()
    code, _, err = run_cli("report", "--results", tmp_path / "res", "--vs", "dl2pb")
    assert code == 2 and err.count("\n") == 1 and "dl2pa" in err


# One fixed store, rendered in every format and compared with tests/expected/ (PROTOBENCH_UPDATE_EXPECTED=1
# rewrites those files from the current code; check the diff by eye before keeping it).
EXPECTED = Path(__file__).resolve().parents[1] / "expected"


def diagnosed(method, dim, seed, acc, best, nc1, ece, **extra):
    """A finished record with diagnostics, on the CPU in fp32."""
    base = record(method, dim, seed, acc, best=best, device="cpu", **extra)
    base["config"]["precision"] = "fp32"
    base["metrics"]["train_loss"] = 0.5 - 0.01 * seed
    return dict(base, diagnostics={"nc1": nc1, "ece": ece, "class_mean_anchor_cosine": 0.9})


def fixed_store():
    """A suite (softmax, dl2pa, hpn at d=2, 4; a paper number) and its records: diagnostics on most, none on
    hpn's (older records), an n/a and a failed cell, and an older setting of one cell."""
    records = []
    for seed, (acc, nc1, ece) in enumerate([(80.0, 0.25, 0.05), (82.0, 0.28, 0.04), (84.0, 0.23, 0.06)]):
        records.append(diagnosed("softmax", 2, seed, acc, acc + 1, nc1, ece))
    for seed, (acc, nc1, ece) in enumerate([(83.0, 0.12, 0.21), (84.5, 0.10, 0.19), (85.0, 0.14, 0.23)]):
        records.append(diagnosed("dl2pa", 2, seed, acc, acc - 1, nc1, ece))
    for seed in range(2):  # made before diagnostics were recorded
        older = record("hpn", 2, seed, 78.0 + seed, best=77.0 + seed, device="cpu")
        records.append(dict(older, config={"train": {"epochs": 3}, "precision": "fp32"}))
    records.append(diagnosed("softmax", 4, 0, 50.0, None, 0.9, 0.3, setting="old", finished="2025-12-01"))
    records += [diagnosed("softmax", 4, s, 88.0 + s, None, 0.031 + 0.002 * s, 0.0125) for s in range(2)]
    records.append(record("dl2pa", 4, 0, None, status="n/a", reason="ETF needs d >= K-1 (K=10, d=4)"))
    records.append(record("hpn", 4, 0, None, status="error", reason="boom"))
    return records


@pytest.fixture
def paper_suite(tmp_path):
    path = tiny_suite(
        tmp_path / "s.yaml", methods=["softmax", "dl2pa", "hpn"], dims=[2, 4], paper={"softmax": {2: 81.5}}
    )
    return load_suite(str(path))


FIXED_METRICS = ["test_accuracy", "test_accuracy_at_best_val", "nc1", "ece"]


@pytest.mark.parametrize(
    ("fmt", "name"), [("md", "report.md"), ("csv", "report.csv"), ("latex", "report.tex"), ("html", "report.html")]
)
def test_every_format_matches_its_stored_expected_output(paper_suite, fmt, name):
    tables = build_tables(fixed_store(), {"s": paper_suite}, metrics=FIXED_METRICS)
    assert [t.metric for t in tables] == FIXED_METRICS
    text = render(tables, fmt)
    if os.environ.get("PROTOBENCH_UPDATE_EXPECTED"):
        (EXPECTED / name).write_text(text)
    assert text == (EXPECTED / name).read_text()


def test_a_diagnostics_table_has_its_values_precision_and_lower_is_better_bold(paper_suite):
    (table,) = build_tables(fixed_store(), {"s": paper_suite}, metrics=["nc1"])
    assert table.title == (
        "s: nc1 (within / between class variability, lower = tighter), mean +- std over seeds (n), epochs 3"
    )
    md = render([table], "md")
    assert "| method | d=2 | d=4 |" in md  # paper and delta columns only for test_accuracy
    assert "| softmax | 0.253 +- 0.025 (3) | 0.032 +- 0.001 (2) |" in md
    assert "| dl2pa | 0.120 +- 0.020 (3) | n/a |" in md
    latex = render([table], "latex")
    assert "softmax & 0.253 $\\pm$ 0.025 (3) & 0.032 $\\pm$ 0.001 (2) \\\\" in latex  # alone at d=4: not bold
    assert "dl2pa & \\textbf{0.120 $\\pm$ 0.020 (3)} & n/a \\\\" in latex  # lowest nc1 is best
    (accuracy,) = build_tables(fixed_store(), {"s": paper_suite}, metrics=["test_accuracy"])
    assert "dl2pa & \\textbf{84.17 $\\pm$ 1.04 (3)} & - & - & n/a" in render([accuracy], "latex")  # highest


def test_ties_are_all_bold_and_a_metric_without_direction_has_none(suite):
    records = [record("softmax", 2, 0, 80.0), record("dl2pa", 2, 0, 80.001)]
    (table,) = build_tables(records, {"s": suite})
    assert render([table], "latex").count("\\textbf{80.00 $\\pm$ 0.00 (1)}") == 2
    records = [dict(r, metrics={"best_val_epoch": e}) for r, e in zip(records, [3, 5], strict=True)]
    (table,) = build_tables(records, {"s": suite}, metrics=["best_val_epoch"])
    assert "\\textbf" not in render([table], "latex") and "5.0 $\\pm$ 0.0 (1)" in render([table], "latex")


def test_records_without_the_key_are_missing_with_a_note(paper_suite):
    (table,) = build_tables(fixed_store(), {"s": paper_suite}, metrics=["ece"])
    md = render([table], "md")
    assert "| hpn | - | failed (boom) |" in md
    assert "_2 record(s) have no ece (made before it was recorded)_" in md
    assert "| softmax | 0.050 +- 0.010 (3) | 0.013 +- 0.000 (2) |" in md
    (final,) = build_tables(fixed_store(), {"s": paper_suite}, metrics=["test_accuracy"])
    assert not [n for n in final.notes if "have no" in n]


def test_a_metric_is_looked_up_in_metrics_then_diagnostics(suite):
    one = dict(record("softmax", 2, 0, 80.0), diagnostics={"nc1": 0.5, "train_loss": 9.0})
    one["metrics"]["train_loss"] = 0.25
    for key, cell in [("train_loss", "0.250 +- 0.000 (1)"), ("nc1", "0.500 +- 0.000 (1)")]:
        (table,) = build_tables([one], {"s": suite}, metrics=[key])
        assert f"| softmax | {cell} | - |" in render([table], "md")


def test_vs_marks_accuracy_tables_only_and_says_so_elsewhere(paper_suite):
    final, nc1 = build_tables(fixed_store(), {"s": paper_suite}, vs="softmax", metrics=["test_accuracy", "nc1"])
    assert any(n.startswith("vs softmax: > better") for n in final.notes)
    assert "--vs softmax: not applied to nc1 (compare knows only final, val-selected)" in nc1.notes
    assert "| dl2pa | 0.120 +- 0.020 (3) | n/a |" in render([nc1], "md")  # no markers


def write_store(root, records):
    for r in records:
        path = root / r["suite"] / r["method"] / f"{r['column']}-{r['seed']}-{r['setting_hash']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    return root


def test_report_metric_flag_is_repeatable_and_comma_separated(run_cli, tmp_path):
    store = write_store(tmp_path / "res", fixed_store())
    code, out, err = run_cli(
        "report", "--results", store, "--metric", "nc1,final", "--metric", "ece", "--format", "csv"
    )
    assert code == 0, err
    assert list(dict.fromkeys(pd.read_csv(io.StringIO(out))["metric"])) == ["nc1", "test_accuracy", "ece"]
    code, out, err = run_cli("report", "--results", store, "--metric", "val-selected", "--metric", "train_loss")
    assert code == 0, err
    assert "test accuracy at the best validation epoch (%)" in out and "train_loss (final-epoch training loss" in out
    assert "final-epoch test accuracy" not in out
    code, out, _ = run_cli("report", "--results", store)  # default: the two accuracy tables
    assert out.count("**s: ") == 2 and "nc1" not in out


def test_report_unknown_metric_is_one_line_listing_the_accepted_names(run_cli, tmp_path):
    store = write_store(tmp_path / "res", fixed_store())
    code, out, err = run_cli("report", "--results", store, "--metric", "nc2")
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith("error: --metric 'nc2' is unknown (did you mean 'nc1'?); use one of final, val-selected, ")
    for name in ("nc1", "ece", "class_mean_anchor_cosine", "train_loss", "test_accuracy"):
        assert name in err


def test_report_html_to_a_file(run_cli, tmp_path):
    store = write_store(tmp_path / "res", fixed_store())
    target = tmp_path / "report.html"
    code, out, err = run_cli("report", "--results", store, "--format", "html", "--out", target, "--metric", "nc1")
    assert code == 0 and out == f"wrote {target}\n", err
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>s: nc1 (within / between class variability" in page
    assert "<td><b>0.120 &plusmn; 0.020 (3)</b></td>" in page and "http" not in page and page.isascii()


def test_html_inlines_png_images_under_plots(paper_suite, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(0.5, 0.5), dpi=20)
    axes.plot([0, 1], [1, 0])
    png = tmp_path / "nc1 <d=2>.png"
    figure.savefig(png)
    plt.close(figure)
    tables = build_tables(fixed_store(), {"s": paper_suite})
    page = render(tables, "html", images=[png])
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    assert "<h2>Plots</h2>" in page and f'src="data:image/png;base64,{encoded}"' in page
    assert page.index("<h2>Plots</h2>") > page.rindex("</table>")
    assert 'alt="nc1 &lt;d=2&gt;.png"' in page and "<figcaption>nc1 &lt;d=2&gt;.png</figcaption>" in page
    assert "Plots" not in render(tables, "html")
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(UserError, match="not a PNG"):
        render(tables, "html", images=[tmp_path / "x.png"])
    with pytest.raises(ValueError, match="html only"):
        render(tables, "md", images=[png])


def test_html_page_names_its_suites_explains_the_cells_and_groups_plots_by_kind(paper_suite, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(0.5, 0.5), dpi=20)
    names = [
        "s-embeddings-d2-dl2pa.png",
        "s-training-curves-d2.png",
        "s-accuracy-vs-dim.png",
        "s-embeddings-d3-hpn.png",
    ]
    for name in names:
        figure.savefig(tmp_path / name)
    plt.close(figure)
    tables = build_tables(fixed_store(), {"s": paper_suite})
    page = render(tables, "html", images=[tmp_path / n for n in names])
    assert "<title>protobench report: s</title>" in page and "<h1>protobench report: s</h1>" in page
    assert "<b>Bold</b>: the best mean of its column" in page and "no finished record" in page  # the key, once
    headings = ["<h2>Plots: s</h2>", "<h3>Accuracy against the embedding dimension</h3>", "<h3>Training curves</h3>"]
    headings.append("<h3>Test embeddings on the circle and sphere</h3>")
    assert [page.index(h) for h in headings] == sorted(page.index(h) for h in headings)  # PLOT_KINDS order
    grid = page[page.index('<div class="grid">') :]
    assert grid.index("s-embeddings-d2-dl2pa.png") < grid.index("s-embeddings-d3-hpn.png") < grid.index("</div>")
    for target in ("table-s-test-accuracy", "plots-s", "plots-s-training-curves", "plots-s-embeddings"):
        assert f'href="#{target}"' in page and f'id="{target}"' in page  # contents link to every part
    assert page.index("<nav>") < page.index("<table>")


def test_report_metric_a_suite_never_recorded_is_one_line_not_unknown(run_cli, tmp_path):
    older = [dict(r, suite="o") for r in fixed_store() if r["method"] == "hpn"]  # no diagnostics
    store = write_store(tmp_path / "res", fixed_store() + older)
    code, _, err = run_cli("report", "o", "--results", store, "--metric", "nc1")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: no finished results with nc1 for o under ") and "made before" in err
    code, _, err = run_cli("report", "o", "--results", store, "--metric", ",")
    assert code == 2 and err == "error: --metric is empty; give metric names, e.g. --metric nc1 or --metric final,ece\n"


def test_only_keys_holding_numbers_are_metrics(suite):
    from protobench.reporting.report import available_metrics

    one = dict(record("softmax", 2, 0, 80.0), diagnostics={"nc1": 0.5, "note": "text", "flag": True, "ece": None})
    names = ["final", "val-selected", "ece", "nc1", "test_accuracy", "test_accuracy_at_best_val"]
    assert available_metrics([one]) == names
