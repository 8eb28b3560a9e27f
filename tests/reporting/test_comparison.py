"""``protobench.reporting.comparison`` on hand-built records whose answers are known: paired vs Welch,
sign-flip, edge cases."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from protobench.core.errors import UserError
from protobench.reporting.comparison import by_cell, compare, notes, sign_flip_p
from protobench.reporting.stats import detectable_difference

B_SPREAD = [70.0, 80.0, 90.0, 75.0, 85.0]  # a large between-seed spread
NOISE = [0.01, -0.02, 0.0, 0.015, -0.005]  # A = B + 0.5 +- tiny noise, seed by seed


def record(method, seed, acc, column="2", status="ok", setting="s1", finished="2026-01-01T00:00:00", **extra):
    return {
        "suite": "s", "method": method, "dim": 2, "seed": seed, "column": column, "status": status,
        "setting_hash": setting, "finished_at": finished, "config": {"train": {"epochs": 3}},
        "metrics": {"test_accuracy": acc, "test_accuracy_at_best_val": None if acc is None else acc - 1}, **extra,
    }  # fmt: skip


def store(a_values, b_values, a_seeds=None, b_seeds=None, column="2"):
    """Records of dl2pa (A) and softmax (B) at one column, seeds 0.. unless given."""
    a_seeds = a_seeds if a_seeds is not None else range(len(a_values))
    b_seeds = b_seeds if b_seeds is not None else range(len(b_values))
    return [record("dl2pa", s, v, column) for s, v in zip(a_seeds, a_values, strict=True)] + [
        record("softmax", s, v, column) for s, v in zip(b_seeds, b_values, strict=True)
    ]


def one_row(records, **kwargs):
    (row,) = compare(records, "s", "dl2pa", ["softmax"], **kwargs)
    return row


def test_pairing_by_seed_finds_what_welch_cannot():
    a = [b + 0.5 + e for b, e in zip(B_SPREAD, NOISE, strict=True)]
    row = one_row(store(a, B_SPREAD))
    assert row.test == "paired t (n=5), sign-flip p" and row.verdict == "dl2pa better"
    assert row.diff == pytest.approx(0.5, abs=1e-9) and row.n_a == row.n_b == 5
    paired = stats.ttest_rel(a, B_SPREAD)
    assert row.p_value == pytest.approx(paired.pvalue, rel=1e-12)
    low, high = paired.confidence_interval(0.95)
    assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high)) and row.ci_low > 0
    assert row.p_sign_flip == pytest.approx(2 / 32)  # every difference positive: only all-+ and all-- reach it
    assert stats.ttest_ind(a, B_SPREAD, equal_var=False).pvalue > 0.05  # unpaired, the spread hides it


def test_exact_sign_flip_p_by_hand():
    assert sign_flip_p(np.array([0.5, 0.4, 0.6, 0.3, 0.2])) == 2 / 32
    # |d| = 1,2,3,4,1 sum to 11; |signed sum| >= 9 leaves at most 1 flipped: {}, {1}, {1'}, and their mirrors
    assert sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0, -1.0])) == 6 / 32
    assert sign_flip_p(np.array([1.0, -1.0])) == 1.0  # ties with the observed count in


def test_a_tie_is_no_evidence():
    row = one_row(store([80.0, 81.0, 82.0, 83.0, 84.0], [79.0, 82.0, 80.0, 85.0, 84.0]))  # diffs 1,-1,2,-2,0
    assert row.diff == 0.0 and row.ci_low < 0 < row.ci_high and row.verdict == "no evidence"
    assert row.p_value == pytest.approx(1.0) and row.p_sign_flip == 1.0


def test_identical_results_have_a_point_interval_and_no_t_p():
    row = one_row(store([80.0, 82.0, 84.0], [80.0, 82.0, 84.0]))
    assert (row.diff, row.ci_low, row.ci_high) == (0.0, 0.0, 0.0) and row.verdict == "no evidence"
    assert row.p_value is None and row.p_sign_flip == 1.0
    shifted = one_row(store([81.0, 83.0, 85.0], [80.0, 82.0, 84.0]))  # every difference exactly 1
    assert (shifted.ci_low, shifted.ci_high) == (1.0, 1.0) and shifted.p_value is None
    assert shifted.p_sign_flip == 2 / 8 and shifted.verdict == "dl2pa better"
    welch = one_row(store([81.0, 81.0, 81.0], [80.0] * 4))  # unpaired, both constant
    assert welch.test == "Welch" and (welch.ci_low, welch.ci_high, welch.p_value) == (1.0, 1.0, None)
    json.dumps([shifted.as_dict(), welch.as_dict()], allow_nan=False)


def test_two_seeds_give_the_difference_only():
    row = one_row(store([80.0, 82.0], [70.0, 71.0]))
    assert row.diff == pytest.approx(10.5) and row.verdict == "too few seeds" and row.test == "paired (n=2)"
    assert (row.ci_low, row.ci_high, row.p_value, row.p_sign_flip) == (None, None, None, None)
    unpaired = one_row(store([80.0, 82.0, 84.0], [70.0, 71.0], b_seeds=[0, 7]))
    assert unpaired.verdict == "too few seeds" and unpaired.test == "Welch"
    text = notes(store([80.0, 82.0], [70.0, 71.0]), "s", "dl2pa", ["softmax"])
    assert "too few seeds (softmax at 2): no interval is possible with n < 3" in text


def test_mismatched_seeds_use_welch():
    a, b = [80.0, 81.5, 79.0, 82.0], [77.0, 78.5, 76.0]
    row = one_row(store(a, b, b_seeds=[0, 1, 5]))
    assert row.test == "Welch" and row.p_sign_flip is None and (row.n_a, row.n_b) == (4, 3)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert row.p_value == pytest.approx(welch.pvalue, rel=1e-12)
    low, high = welch.confidence_interval(0.95)
    assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert row.verdict == ("dl2pa better" if low > 0 else "no evidence")


def test_many_seeds_skip_the_sign_flip_test():
    rng = np.random.default_rng(0)
    b = list(rng.normal(80, 3, 12))
    row = one_row(store([v + 1 + rng.normal(0, 0.1) for v in b], b))
    assert row.test == "paired t (n=12)" and row.p_sign_flip is None and row.verdict == "dl2pa better"


def test_n_a_missing_and_failed_cells_say_so():
    records = store([80.0, 81.0, 82.0], [70.0, 71.0, 72.0])
    records += [record("dl2pa", s, 90.0 + s, column="4") for s in range(3)]
    records.append(record("softmax", 0, None, column="4", status="n/a", reason="needs d >= K-1"))
    records += [record("dl2pa", 0, None, column="8", status="error", reason="boom")]
    records += [record("softmax", 0, 60.0, column="8")]
    rows = compare(records, "s", "dl2pa", ["softmax"])
    assert [r.column for r in rows] == ["2", "4", "8"]
    cells = by_cell(rows)
    assert cells["softmax", "2"].verdict == "dl2pa better"
    na = cells["softmax", "4"]
    assert na.verdict == "softmax: n/a" and na.diff is None and na.mean_a == pytest.approx(91.0) and na.n_b == 0
    assert cells["softmax", "8"].verdict == "dl2pa: error"
    text = notes(records, "s", "dl2pa", ["softmax"])
    assert "n/a: softmax at 4: needs d >= K-1" in text
    missing = compare(records, "s", "dl2pa", ["softmax", "etf"])
    assert [r.verdict for r in missing if r.b == "etf"] == ["etf: missing"] * 2 + ["dl2pa: error; etf: missing"]


def test_only_the_latest_setting_counts():
    records = store([80.0, 81.0, 82.0], [79.0, 80.0, 81.0])
    old = [record("dl2pa", s, 10.0, setting="old", finished="2025-01-01") for s in range(3)]
    row = one_row(records + old)
    assert row.mean_a == pytest.approx(81.0) and row.test.startswith("paired t (n=3)")
    assert "3 record(s) of older settings of the same cells are not compared" in notes(
        records + old, "s", "dl2pa", ["softmax"]
    )


def test_val_selected_metric_and_several_bs():
    records = store([80.0, 81.0, 82.0], [79.0, 80.0, 81.0]) + [record("etf", s, 85.0 + s) for s in range(3)]
    rows = compare(records, "s", "dl2pa", ["softmax", "etf"], metric="val-selected")
    assert [(r.b, r.mean_a) for r in rows] == [("softmax", pytest.approx(80.0)), ("etf", pytest.approx(80.0))]
    assert by_cell(rows)["etf", "2"].verdict == "etf better"
    with pytest.raises(UserError, match="--metric 'best' is unknown; use one of final, val-selected"):
        compare(records, "s", "dl2pa", ["softmax"], metric="best")


def test_mixed_code_is_noted():
    records = store([80.0, 81.0, 82.0], [79.0, 80.0, 81.0])
    for i, r in enumerate(records):
        r["git_commit"] = ("a" if i else "b") * 40
    assert any(n.startswith("mixed code: records from 2 commits") for n in notes(records, "s", "dl2pa", ["softmax"]))


SHIFT_NOISE = [0.3, -0.2, 0.25, -0.1, 0.05]


def shifted_store():
    """dl2pa against three heads, each below it seed by seed by a shift plus SHIFT_NOISE: raw paired p of
    about 0.0044 (softmax, shift 0.5), 0.033 (etf, 0.25) and 0.17 (hpn, 0.1)."""
    records = [record("dl2pa", s, v) for s, v in enumerate(B_SPREAD)]
    for method, shift in (("softmax", 0.5), ("etf", 0.25), ("hpn", 0.1)):
        below = [v - shift - e for v, e in zip(B_SPREAD, SHIFT_NOISE, strict=True)]
        records += [record(method, s, v) for s, v in enumerate(below)]
    return records


def test_the_verdict_follows_the_p_corrected_over_the_rows_of_one_call():
    bs = ["softmax", "etf", "hpn"]
    rows = compare(shifted_store(), "s", "dl2pa", bs)
    raw = [r.p_value for r in rows]
    assert raw[0] < 0.01 and 0.025 < raw[1] < 0.05 < raw[2]
    by_hand = [3 * raw[0], max(3 * raw[0], 2 * raw[1]), max(3 * raw[0], 2 * raw[1], raw[2])]  # Holm, sorted already
    assert [r.p_adjusted for r in rows] == pytest.approx(by_hand)
    assert [r.verdict for r in rows] == ["dl2pa better", "no evidence", "no evidence"]  # etf: 2 * 0.033 > 0.05
    uncorrected = compare(shifted_store(), "s", "dl2pa", bs, correction="none")
    assert [r.p_adjusted for r in uncorrected] == raw and uncorrected[1].verdict == "dl2pa better"
    bh = compare(shifted_store(), "s", "dl2pa", bs, correction="bh")
    assert bh[1].p_adjusted == pytest.approx(3 * raw[1] / 2) and bh[1].verdict == "dl2pa better"
    with pytest.raises(UserError, match="--correction 'bonferroni' is unknown; use one of none, holm, bh"):
        compare(shifted_store(), "s", "dl2pa", bs, correction="bonferroni")


def test_a_row_without_a_verdict_says_what_it_could_have_detected():
    rows = compare(shifted_store(), "s", "dl2pa", ["softmax", "etf", "hpn"])
    hpn = rows[2]
    se = np.std(SHIFT_NOISE, ddof=1) / math.sqrt(5)  # the differences are 0.1 + SHIFT_NOISE
    assert (hpn.se, hpn.df) == (pytest.approx(se), 4)
    assert hpn.detectable == pytest.approx(detectable_difference(se, 4, 0.05 / 3))  # the strictest Holm step
    alone = one_row(store([80.0, 81.0, 82.0, 83.0, 84.0], [79.0, 82.0, 80.0, 85.0, 84.0]))
    assert alone.detectable == pytest.approx(detectable_difference(alone.se, 4, 0.05))  # a family of one
    assert alone.detectable > abs(alone.ci_low)  # 80% power takes more than the half-width that p = 0.05 needs


def test_the_equivalence_verdict_flips_when_the_margin_shrinks_below_the_interval():
    a, b = [80.0, 81.0, 82.0, 83.0, 84.0], [79.0, 82.0, 80.0, 85.0, 84.0]  # differences 1, -1, 2, -2, 0
    low, high = stats.ttest_rel(a, b).confidence_interval(0.90)  # TOST at 0.05: this interval inside +-M
    bound = max(abs(low), abs(high))  # 2.132 * 1.581 / sqrt(5) = 1.507
    assert bound == pytest.approx(stats.t.ppf(0.95, 4) * math.sqrt(2.5) / math.sqrt(5))
    wide = one_row(store(a, b), margin=1.01 * bound)
    assert wide.verdict == f"equivalent within +-{1.01 * bound:g}" and wide.p_equivalence < 0.05
    narrow = one_row(store(a, b), margin=0.99 * bound)
    assert narrow.verdict == "no evidence" and narrow.p_equivalence > 0.05
    assert one_row(store(a, b)).p_equivalence is None  # no margin, no equivalence test
    small_gain = [v + 0.1 + e for v, e in zip(B_SPREAD, NOISE, strict=True)]  # a real difference inside +-1
    row = one_row(store(small_gain, B_SPREAD), margin=1.0)
    assert row.p_equivalence < 0.05 and row.verdict == "dl2pa better"  # a difference found comes first
    with pytest.raises(UserError, match="--margin 0: use a positive difference"):
        one_row(store(a, b), margin=0.0)


def test_an_adjusted_p_exactly_at_alpha_is_no_evidence():
    """The verdict needs p adj < alpha, strictly (docs/compare.md): two rows of p = 0.025 under Holm both
    adjust to 2 x 0.025 = 0.05, which is no evidence; a hair below it is."""
    from protobench.reporting.comparison import ALPHA, Row, judge

    def row(p: float) -> Row:
        return Row("s", "2", "dl2pa", "softmax", 5, 5, 81.0, 80.0, 1.0, 0.1, 1.9, p, None, "paired t (n=5)", "",
                   se=0.4, df=4.0)  # fmt: skip

    at = [row(ALPHA / 2), row(ALPHA / 2)]
    judge(at, "holm")
    assert [r.p_adjusted for r in at] == [ALPHA, ALPHA] and [r.verdict for r in at] == ["no evidence"] * 2
    below = [row(ALPHA / 2 * 0.999), row(ALPHA / 2)]
    judge(below, "holm")
    assert below[0].p_adjusted < ALPHA and below[0].verdict == "dl2pa better"
    (single,) = alone = [row(ALPHA)]
    judge(alone, "none")
    assert single.p_adjusted == ALPHA and single.verdict == "no evidence"


def test_the_caption_names_the_correction_and_is_one_line_without_a_test():
    from protobench.reporting.comparison import caption

    assert "p adj = p (t) Holm-adjusted over the 3 test(s) of this table" in caption("holm", 3, None, False, 3)
    assert "alpha 0.05/3." in caption("holm", 3, None, False, 3)
    assert "p adj = p (t), no correction for multiple comparisons" in caption("none", 3, None, False, 3)
    declared = caption("bh", 6, 0.5, True)
    assert "Benjamini-Hochberg-adjusted over the 6 test(s) of the suite's declared family" in declared
    for none_tested in (caption("holm", 0, None, False, 0), caption("holm", 4, None, True, 0)):
        assert none_tested.startswith("diff = A - B. No row has a test: none has both cells finished with at least 3")
        assert "0 test(s)" not in none_tested and "0.05/0" not in none_tested and "\n" not in none_tested


def test_the_caption_of_rows_counts_the_rows_that_had_a_test():
    from protobench.reporting.comparison import caption, rows_caption

    rows = compare(store([80.5, 81.0, 79.5], [80.0, 80.0, 80.0]), "s", "dl2pa", ["softmax"])
    assert rows_caption(rows, "holm", 1, None, False) == caption("holm", 1, None, False, 1)
    untested = compare(store([80.5, 81.0], [80.0, 80.0]), "s", "dl2pa", ["softmax"])
    assert rows_caption(untested, "holm", 1, None, False).startswith("diff = A - B. No row has a test")
