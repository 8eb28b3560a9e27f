"""``protobench compare``: the table with its verdicts, --json, and the one-line errors."""

import json

import pytest

from protobench.store.records import cell_path, write_record
from tests.conftest import tiny_suite

SUITE = "cmp-s"  # not a shipped suite: columns come from the records
B_VALUES = [70.0, 80.0, 90.0, 75.0, 85.0]


def write(root, method, seed, acc, dim=2, status="ok", suite=SUITE, **extra):
    record = {
        "suite": suite, "method": method, "dim": dim, "seed": seed, "column": str(dim), "status": status,
        "setting_hash": "s1", "finished_at": "2026-01-01T00:00:00", "config": {"train": {"epochs": 3}},
        "metrics": {"test_accuracy": acc, "test_accuracy_at_best_val": acc}, **extra,
    }  # fmt: skip
    write_record(cell_path(root, suite, method, dim, seed, None, f"{method}{seed}{dim}".ljust(10, "0")), record)


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
    text = " ".join(out.split())  # the caption wraps
    assert "Paired t on per-seed differences" in text and "Holm-adjusted over the 2 test(s) of this table" in text
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


def holm_by_hand(p_values):
    """Holm's adjusted p computed here: sorted ascending, (m - j + 1) * p_(j), running max, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@pytest.fixture
def family_store(tmp_path, monkeypatch):
    """Suite fam (softmax, dl2pa, hpn at d=2, 4) declaring 4 tests: dl2pa-softmax at 2 and 4, hpn-softmax at 2
    (hpn never ran: untested), and dl2pa-softmax at 2 of suite fam-lt; records of both suites, 5 seeds."""
    folder = tmp_path / "suites"
    folder.mkdir()
    family = [
        {"a": "dl2pa", "b": "softmax", "columns": ["2", "4"]},
        {"a": "hpn", "b": "softmax", "columns": ["2"]},
        {"suite": "fam-lt", "a": "dl2pa", "b": "softmax", "columns": ["2"]},
    ]
    tiny_suite(folder / "fam.yaml", methods=["softmax", "dl2pa", "hpn"], dims=[2, 4], family=family)
    tiny_suite(folder / "fam-lt.yaml", methods=["softmax", "dl2pa"], dims=[2])
    tiny_suite(folder / "plain.yaml", methods=["softmax", "dl2pa"], dims=[2])
    monkeypatch.setenv("PROTOBENCH_SUITES", str(folder))
    root = tmp_path / "res"
    for seed, b in enumerate(B_VALUES):
        for suite, dim, gain in (("fam", 2, 0.5), ("fam", 4, 0.2), ("fam-lt", 2, 0.3)):
            write(root, "softmax", seed, b, dim=dim, suite=suite)
            write(root, "dl2pa", seed, b + gain + 0.3 * (seed % 2) - 0.1 * seed, dim=dim, suite=suite)
    return root


def test_compare_family_corrects_over_every_declared_test(run_cli, family_store):
    code, out, err = run_cli("compare", "fam", "--family", "--results", family_store, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["family"] is True and answer["correction"] == "holm" and answer["family_size"] == 4
    rows = answer["rows"]
    assert [(r["suite"], r["a"], r["b"], r["column"]) for r in rows] == [
        ("fam", "dl2pa", "softmax", "2"), ("fam", "dl2pa", "softmax", "4"),
        ("fam", "hpn", "softmax", "2"), ("fam-lt", "dl2pa", "softmax", "2"),
    ]  # fmt: skip
    assert rows[2]["verdict"] == "hpn: missing" and rows[2]["p_value"] is None and rows[2]["p_adjusted"] is None
    raw = [r["p_value"] for r in rows]
    assert raw[0] < 0.05 / 3 and rows[0]["verdict"] == "no evidence"  # 4 * p > 0.05: the untested test counts too
    expected = holm_by_hand([raw[0], raw[1], 1.0, raw[3]])  # the untested declared test counts as p = 1
    for row, p in zip(rows, expected, strict=True):
        if row["p_value"] is not None:
            assert row["p_adjusted"] == pytest.approx(p) and row["detectable"] > 0
            assert row["verdict"] == ("dl2pa better" if p < 0.05 else "no evidence")
    assert "1 of the 4 declared tests could not run; each counts in the family as p = 1" in answer["notes"]
    code, out, err = run_cli("compare", "fam", "--family", "--results", family_store, "--correction", "bh")
    assert code == 0, err
    text = " ".join(out.split())  # the caption wraps
    assert "Benjamini-Hochberg-adjusted over the 4 test(s) of the suite's declared family" in text
    assert "fam-lt" in text and "hpn: missing" in text and "80% power at alpha 0.05/4" in text


def test_compare_json_carries_raw_and_adjusted_p_and_the_margin(run_cli, store):
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", store, "--json", "--margin", "5")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["correction"], answer["family_size"], answer["margin"], answer["alpha"]) == ("holm", 2, 5.0, 0.05)
    rows = {r["column"]: r for r in answer["rows"]}
    assert rows["2"]["p_adjusted"] == pytest.approx(min(1.0, 2 * rows["2"]["p_value"]))  # the smaller of 2
    assert rows["4"]["verdict"] == "equivalent within +-5" and rows["4"]["p_equivalence"] < 0.05
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", store, "--correction", "none")
    text = " ".join(out.split())  # the caption wraps
    assert code == 0 and "no correction for multiple comparisons" in text and "80% power at alpha 0.05." in text


def test_compare_family_and_correction_errors_are_one_line(run_cli, family_store):
    for args, message in (
        (["fam", "dl2pa", "softmax", "--correction", "bonferroni"], "--correction 'bonferroni' is unknown"),
        (["fam", "dl2pa", "softmax", "--margin", "0"], "--margin 0: use a positive difference in points"),
        (["fam", "dl2pa", "softmax", "--margin", "-1"], "--margin -1: use a positive difference in points"),
        (["fam", "--family", "--margin", "nan"], "--margin nan: use a positive difference in points"),
        (["plain", "--family"], "suite plain declares no family; add a 'family' key"),
        (["fam", "dl2pa", "--family"], "--family takes A and B from the suite's 'family' key; give only SUITE"),
        (["fam", "dl2pa"], "give methods A and B (protobench compare SUITE A B), or --family"),
        (["nosuch", "--family"], "nosuch"),
    ):
        code, out, err = run_cli("compare", *args, "--results", family_store)
        assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, (args, err)
        assert message in err, (args, err)


def test_seeds_and_without_reused_restrict_the_records_compared(run_cli):
    """--without-reused drops, per suite, the seeds at which a record is a copy (all rows, so pairs stay whole);
    --seeds keeps the seeds named. Both on the committed confirm-matching family (20 primary cells reused)."""
    from pathlib import Path

    store = Path(__file__).resolve().parents[2] / "results" / "gpu"
    code, out, _ = run_cli("compare", "confirm-matching", "--family", "--results", store, "--without-reused", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["without_reused"] is True and answer["family_size"] == 6
    counts = {(r["suite"], r["a"], r["column"]): (r["n_a"], r["n_b"]) for r in answer["rows"]}
    assert counts[("confirm-matching", "dl2pa-lr001", "2")] == (10, 10)  # this pair reused nothing, loses seeds 0-4
    assert counts[("confirm-matching-lt", "dl2pa-lr001", "r100")] == (15, 15)  # a suite that reused nothing
    code, out, _ = run_cli("compare", "confirm-matching", "dl2pa-lr003", "dl2pa-static-lr003", "--results", store,
                           "--seeds", "5,6,7", "--json")  # fmt: skip
    rows = json.loads(out)["rows"]
    assert code == 0 and {(r["n_a"], r["n_b"]) for r in rows} == {(3, 3)}
    code, _, err = run_cli("compare", "confirm-matching", "dl2pa-lr003", "dl2pa-static-lr003", "--results", store,
                           "--seeds", ",")  # fmt: skip
    assert code == 2 and err == "error: --seeds is empty; give a comma-separated list, e.g. --seeds 0,1,2\n"


def test_b_results_sets_a_method_against_itself_in_another_store(run_cli, store, tmp_path):
    # The same method in two stores (packed against solo, GPU against CPU): B's records from --b-results.
    other = tmp_path / "other"
    for seed, b in enumerate(B_VALUES):
        write(other, "dl2pa", seed, b + 0.5 + 0.01 * (seed % 2) + (0.02 if seed % 2 else -0.02))  # A +- 0.02
    code, out, err = run_cli("compare", SUITE, "dl2pa", "dl2pa", "--results", store, "--b-results", other,
                             "--margin", "0.5", "--json")  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    rows = {(r["b"], r["column"]): r for r in answer["rows"]}
    label = f"dl2pa ({other})"
    assert answer["b"] == [label] and answer["b_results"] == str(other) and set(rows) == {(label, "2"), (label, "4")}
    assert rows[label, "2"]["verdict"] == "equivalent within +-0.5" and rows[label, "2"]["test"].startswith("paired")
    assert rows[label, "4"]["verdict"] == f"{label}: missing"  # the other store has no d = 4
    assert not any(note.startswith("other settings") for note in answer["notes"])  # the same cells
    changed = tmp_path / "changed"
    for seed, b in enumerate(B_VALUES):
        write(changed, "dl2pa", seed, b, setting_hash="s2")  # another recipe, say
    code, out, err = run_cli("compare", SUITE, "dl2pa", "dl2pa", "--results", store, "--b-results", changed)
    assert code == 0, err
    assert (
        f"other settings: dl2pa ({changed}) at 2 holds another setting than dl2pa (its setting hash differs), "
        "so these are not the same cells trained twice"
    ) in " ".join(out.split())
    code, _, err = run_cli("compare", SUITE, "dl2pa", "dl2pa", "--results", store)
    assert code == 2 and "also among B" in err  # without --b-results, one store: refused
    code, _, err = run_cli("compare", SUITE, "dl2pa", "dl2pa", "--results", store, "--b-results", tmp_path / "none")
    assert (
        code == 2
        and err.strip()
        == f"error: --b-results {tmp_path / 'none'} is not a folder; point it at the results store holding B's records"
    )
