"""compare's table: every header comes with its cell, the optional columns appear only when they apply."""

from __future__ import annotations

import dataclasses

from protobench.reporting.comparison import Row
from protobench.reporting.comparison_table import table

ROW = Row(
    suite="s", column="2", a="dl2pa", b="softmax", n_a=5, n_b=5, mean_a=80.5, mean_b=80.0, diff=0.5, ci_low=0.25,
    ci_high=0.75, p_value=0.0012, p_sign_flip=0.0625, test="paired t (n=5)", verdict="dl2pa better",
    p_adjusted=0.0024, detectable=0.31, p_equivalence=0.04,
)  # fmt: skip
EMPTY = dataclasses.replace(
    ROW, b="etf", mean_b=None, diff=None, ci_low=None, ci_high=None, p_value=None, p_sign_flip=None, test="",
    verdict="etf: n/a", p_adjusted=None, detectable=None,
)  # fmt: skip


def test_the_cells_line_up_with_their_headers():
    headers, cells = table([ROW, EMPTY])
    assert headers == ["B", "column", "A mean", "B mean", "diff", "95% CI", "p (t)", "p adj", "p (sign-flip)",
                       "detectable", "test", "verdict"]  # fmt: skip
    assert dict(zip(headers, cells[0], strict=True)) == {
        "B": "softmax", "column": "2", "A mean": "80.50", "B mean": "80.00", "diff": "+0.50",
        "95% CI": "[+0.25, +0.75]", "p (t)": "0.0012", "p adj": "0.0024", "p (sign-flip)": "0.0625",
        "detectable": "+-0.31", "test": "paired t (n=5)", "verdict": "dl2pa better",
    }  # fmt: skip
    empty = dict(zip(headers, cells[1], strict=True))
    assert empty["95% CI"] == empty["diff"] == empty["detectable"] == empty["test"] == "-"


def test_suite_a_and_tost_columns_appear_only_when_they_apply():
    other = dataclasses.replace(ROW, suite="s-lt", a="hpn")
    headers, cells = table([ROW, other], margin=0.5)
    assert headers[:2] == ["suite", "A"] and headers[-3] == "p (TOST +-0.5)"
    assert [row[:2] for row in cells] == [["s", "dl2pa"], ["s-lt", "hpn"]] and cells[0][-3] == "0.04"
    assert all(len(row) == len(headers) for row in cells)
    assert table([], margin=None) == (table([ROW])[0], [])
