"""Is method A better than method B? Per column of one suite: the mean difference, a 95% CI, and a verdict.

Paired by seed when both methods ran the same seeds (a seed fixes the data order, augmentation and the
backbone's initial weights for every head, docs/engine.md), else Welch's t. The t-test p-values of one call
(or of a suite's declared ``family``) are corrected together, Holm by default, and the verdict follows the
adjusted p. The tests, the correction and the verdict rule are described in docs/compare.md.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from protobench.core.errors import UserError
from protobench.reporting.stats import (
    CORRECTIONS,
    adjust,
    detectable_difference,
    equivalence_p,
    strictest_alpha,
    t_quantile,
    t_two_sided_p,
)
from protobench.reporting.table import correction_rule, latest_setting, provenance_notes
from protobench.suite.definition import Suite

METRIC_KEYS = {"final": "test_accuracy", "val-selected": "test_accuracy_at_best_val"}
CONFIDENCE = 0.95
ALPHA = 0.05  # the level of the verdicts: adjusted p < ALPHA, and the TOST p < ALPHA for equivalence
MIN_SEEDS = 3  # fewer seeds on either side (or fewer pairs): the difference only, no interval
MAX_SIGN_FLIP = 10  # the exact sign-flip test enumerates 2^n sign assignments up to this n
TOO_FEW = "too few seeds"
NO_EVIDENCE = "no evidence"


@dataclass
class Row:
    """A vs one B at one column: counts, means, the difference A-B, its 95% CI, p-values and a verdict."""

    suite: str
    column: str
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # paired or Welch t-test; None when undefined (zero variance, too few seeds)
    p_sign_flip: float | None  # exact sign-flip test, paired rows with n <= MAX_SIGN_FLIP only
    test: str
    verdict: str
    se: float | None = None  # standard error of the difference (0: zero variance); None: no test was possible
    df: float | None = None  # degrees of freedom of the t-test (n - 1 paired, Welch-Satterthwaite otherwise)
    p_adjusted: float | None = None  # the t-test's p corrected over the family (docs/compare.md)
    detectable: float | None = None  # smallest difference found with 80% power at the strictest step's alpha
    p_equivalence: float | None = None  # TOST p of |difference| < margin, with --margin only

    @property
    def tested(self) -> bool:
        """True when both cells had enough seeds for a t-test (the row counts in the family with its own p)."""
        return self.se is not None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (None, never NaN or inf)."""
        return {k: finite(v) for k, v in asdict(self).items()}


@dataclass
class Cell:
    """One method at one column: its status, metric value per seed, and the records those came from."""

    status: str  # ok | n/a | error | missing
    values: dict[int, float] = field(default_factory=dict)
    used: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0  # records of older settings
    reason: str | None = None


def finite(value: Any) -> Any:
    """``value`` as a plain float, or None when it is NaN or infinite; other values unchanged."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def metric_key(metric: str) -> str:
    """``final`` -> test_accuracy, ``val-selected`` -> test_accuracy_at_best_val."""
    if metric not in METRIC_KEYS:
        raise UserError(f"--metric '{metric}' is unknown; use one of {', '.join(METRIC_KEYS)}")
    return METRIC_KEYS[metric]


def suite_columns(records: list[dict[str, Any]], suite: Suite | None) -> list[str]:
    """The suite's columns in grid order, then any others in the records, sorted as the report sorts them."""
    columns = suite.columns() if suite else []
    extra = {r["column"] for r in records} - set(columns)
    return columns + sorted(extra, key=lambda c: (len(c), c))


def cell(records: list[dict[str, Any]], method: str, column: str, key: str) -> Cell:
    """The values per seed of ``method`` at ``column``, from its latest setting only."""
    group = [r for r in records if r["method"] == method and r["column"] == column]
    if not group:
        return Cell("missing")
    chosen = latest_setting(group)
    ignored = len(group) - len(chosen)
    ok = [r for r in chosen if r.get("status") == "ok" and (r.get("metrics") or {}).get(key) is not None]
    if ok:
        return Cell("ok", {int(r["seed"]): float(r["metrics"][key]) for r in ok}, ok, ignored)
    for status in ("n/a", "error"):
        if found := [r for r in chosen if r.get("status") == status]:
            return Cell(status, ignored=ignored, reason=found[0].get("reason"))
    return Cell("missing", ignored=ignored)


def sign_flip_p(diffs: np.ndarray) -> float:
    """Exact two-sided sign-flip p: the share of the 2^n sign assignments whose |mean| >= the observed (ties in)."""
    n = len(diffs)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    means = np.abs(signs @ diffs) / n
    observed = abs(diffs.mean())
    tolerance = 1e-9 * max(1.0, observed)  # the same sum in another order may differ in the last bits
    return float(np.count_nonzero(means >= observed - tolerance)) / len(signs)


def constant(values: np.ndarray) -> bool:
    """True when every value is the same (up to floating-point noise)."""
    return bool(np.ptp(values) <= 1e-9 * max(1.0, float(np.abs(values).max())))


def paired(row: Row, a: np.ndarray, b: np.ndarray) -> None:
    """Fill ``row`` from the per-seed differences a-b: CI, t-test p, sign-flip p, standard error and test label."""
    diffs = a - b
    n = len(diffs)
    mean = float(diffs.mean())
    row.p_sign_flip = sign_flip_p(diffs) if n <= MAX_SIGN_FLIP else None
    row.test = f"paired t (n={n})" + (", sign-flip p" if row.p_sign_flip is not None else "")
    row.df = n - 1
    if constant(diffs):  # zero variance: the interval is the point, the t statistic is undefined
        row.ci_low, row.ci_high, row.se = mean, mean, 0.0
        return
    row.se = float(diffs.std(ddof=1)) / math.sqrt(n)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * row.se
    row.ci_low, row.ci_high, row.p_value = mean - half, mean + half, finite(t_two_sided_p(mean / row.se, n - 1))


def welch(row: Row, a: np.ndarray, b: np.ndarray) -> None:
    """Fill ``row`` with the CI (Welch-Satterthwaite degrees of freedom), Welch's t p and the standard error."""
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, abs(diff)):  # both constant: the interval is the point
        row.ci_low, row.ci_high, row.se, row.df = diff, diff, 0.0, len(a) + len(b) - 2
        return
    row.se = se
    row.df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    half = t_quantile(0.5 + CONFIDENCE / 2, row.df) * se
    row.ci_low, row.ci_high = diff - half, diff + half
    row.p_value = finite(t_two_sided_p(diff / se, row.df))


def family_p(row: Row) -> float:
    """The p-value a row brings to the family: its t-test's; with zero variance (t undefined) its limit, 0 for a
    non-zero difference and 1 for none; 1 for a row without a test (a declared comparison that could not run)."""
    if not row.tested:
        return 1.0
    if row.p_value is not None:
        return row.p_value
    return 0.0 if row.diff else 1.0


def verdict(row: Row, margin: float | None) -> str:
    """``A better`` / ``B better`` when the adjusted p < ALPHA (by the sign of the difference); else, with a
    margin, ``equivalent within +-M`` when the TOST p < ALPHA; else no evidence."""
    if row.p_adjusted is not None and row.p_adjusted < ALPHA:
        return f"{row.a} better" if row.diff > 0 else f"{row.b} better"
    if margin is not None and row.p_equivalence is not None and row.p_equivalence < ALPHA:
        return f"equivalent within +-{margin:g}"
    return NO_EVIDENCE


def judge(rows: list[Row], correction: str = "holm", margin: float | None = None, declared: bool = False) -> int:
    """Correct the tested rows' p over their family and give each its verdict, detectable difference and (with
    ``margin``) TOST p; returns the family size: the tested rows, or with ``declared`` every row (an untested
    declared comparison counts with p = 1)."""
    check_correction(correction)
    check_margin(margin)
    counted = [r for r in rows if r.tested or declared]
    adjusted = adjust([family_p(r) for r in counted], correction)
    alpha = strictest_alpha(ALPHA, correction, len(counted))
    for row, p in zip(counted, adjusted, strict=True):
        if not row.tested:
            continue
        row.p_adjusted = p
        row.detectable = detectable_difference(row.se, row.df, alpha)
        if margin is not None:
            row.p_equivalence = equivalence_p(row.diff, row.se, row.df, margin)
        row.verdict = verdict(row, margin)
    return len(counted)


def check_correction(correction: str) -> None:
    """UserError unless ``correction`` is one of CORRECTIONS."""
    if correction not in CORRECTIONS:
        raise UserError(f"--correction '{correction}' is unknown; use one of {', '.join(CORRECTIONS)}")


def check_margin(margin: float | None) -> None:
    """UserError unless ``margin`` is None or a positive finite number of points."""
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise UserError(f"--margin {margin:g}: use a positive difference in points of accuracy, e.g. --margin 0.5")


def compare_cells(suite_name: str, column: str, a: str, b: str, ca: Cell, cb: Cell) -> Row:
    """The row of A's cell against B's cell at one column, before correction (``judge`` gives the verdict)."""
    mean_a = float(np.mean(list(ca.values.values()))) if ca.values else None
    mean_b = float(np.mean(list(cb.values.values()))) if cb.values else None
    row = Row(suite_name, column, a, b, len(ca.values), len(cb.values), mean_a, mean_b,
              None, None, None, None, None, "", "")  # fmt: skip
    if ca.status != "ok" or cb.status != "ok":
        row.verdict = "; ".join(f"{m}: {c.status}" for m, c in ((a, ca), (b, cb)) if c.status != "ok")
        return row
    row.diff = mean_a - mean_b
    seeds = sorted(ca.values)
    is_paired = len(seeds) >= 2 and seeds == sorted(cb.values)
    row.test = f"paired (n={len(seeds)})" if is_paired else "Welch"
    if min(row.n_a, row.n_b) < MIN_SEEDS:
        row.verdict = TOO_FEW
        return row
    if is_paired:
        paired(row, np.array([ca.values[s] for s in seeds]), np.array([cb.values[s] for s in seeds]))
    else:
        welch(row, np.array(list(ca.values.values())), np.array(list(cb.values.values())))
    row.verdict = NO_EVIDENCE  # until ``judge`` corrects the family
    return row


def cells(
    records: list[dict[str, Any]], suite_name: str, methods: list[str], metric: str, suite: Suite | None
) -> tuple[list[str], dict[tuple[str, str], Cell]]:
    """The suite's columns and the Cell of every (method, column)."""
    key = metric_key(metric)
    records = [r for r in records if r.get("suite") == suite_name]
    columns = suite_columns(records, suite)
    return columns, {(m, c): cell(records, m, c, key) for m in methods for c in columns}


def compare(
    records: list[dict[str, Any]],
    suite_name: str,
    a: str,
    bs: list[str],
    metric: str = "final",
    suite: Suite | None = None,
    correction: str = "holm",
    margin: float | None = None,
) -> list[Row]:
    """A against each of ``bs`` at every column of ``suite_name`` where either has records (B-major,
    columns in suite order), the t-test p corrected over these rows by ``correction``."""
    return comparison(records, suite_name, a, bs, metric, suite, correction, margin)[0]


def comparison(
    records: list[dict[str, Any]],
    suite_name: str,
    a: str,
    bs: list[str],
    metric: str = "final",
    suite: Suite | None = None,
    correction: str = "holm",
    margin: float | None = None,
) -> tuple[list[Row], list[str], int]:
    """The rows of ``compare``, the notes beneath them and the family size, from one pass over the records."""
    columns, found = cells(records, suite_name, [a, *bs], metric, suite)
    rows = [
        compare_cells(suite_name, c, a, b, found[a, c], found[b, c])
        for b in bs
        for c in columns
        if not (found[a, c].status == found[b, c].status == "missing")
    ]
    size = judge(rows, correction, margin)
    return rows, reader_notes(found, rows), size


def family_comparison(
    records: list[dict[str, Any]],
    suite: Suite,
    metric: str = "final",
    correction: str = "holm",
    margin: float | None = None,
) -> tuple[list[Row], list[str], int]:
    """A row per column of each comparison in ``suite.family`` (in its own suite's records where it names one),
    corrected together over every declared test, with the notes and the family size (all declared tests)."""
    key = metric_key(metric)
    rows: list[Row] = []
    found: dict[tuple[str, str], Cell] = {}
    for declared in suite.family:
        name = declared.suite or suite.name
        mine = [r for r in records if r.get("suite") == name]
        for column in declared.columns:
            ca, cb = cell(mine, declared.a, column, key), cell(mine, declared.b, column, key)
            where = column if name == suite.name else f"{column} of {name}"
            found[declared.a, where], found[declared.b, where] = ca, cb
            rows.append(compare_cells(name, column, declared.a, declared.b, ca, cb))
    size = judge(rows, correction, margin, declared=True)
    lines = reader_notes(found, rows)
    if untested := [r for r in rows if not r.tested]:
        lines.append(f"{len(untested)} of the {size} declared tests could not run; each counts in the family as p = 1")
    return rows, lines, size


def by_cell(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The rows keyed by (B, column), to look a cell's verdict up (e.g. beside a report table)."""
    return {(row.b, row.column): row for row in rows}


def notes(
    records: list[dict[str, Any]],
    suite_name: str,
    a: str,
    bs: list[str],
    metric: str = "final",
    suite: Suite | None = None,
) -> list[str]:
    """What a reader of the comparison should know: n/a reasons, older settings ignored, mixed code."""
    return comparison(records, suite_name, a, bs, metric, suite)[1]


def reader_notes(found: dict[tuple[str, str], Cell], rows: list[Row]) -> list[str]:
    """The notes of a comparison from its cells and rows."""
    lines: list[str] = []
    for (method, column), c in found.items():
        if c.status == "n/a":
            lines.append(f"n/a: {method} at {column}: {c.reason}")
    ignored = sum(c.ignored for c in found.values())
    if ignored:
        lines.append(f"{ignored} record(s) of older settings of the same cells are not compared")
    few = [f"{r.b} at {r.column}" for r in rows if r.verdict == TOO_FEW]
    if few:
        lines.append(f"{TOO_FEW} ({', '.join(few)}): no interval is possible with n < {MIN_SEEDS}")
    lines += provenance_notes([r for c in found.values() for r in c.used])
    return lines


def caption(correction: str, size: int, margin: float | None, family: bool, tested: int | None = None) -> str:
    """The footnote of the table: the tests, the correction applied over the family and the verdict rule; one
    line instead when no row was ``tested`` (no family to correct, no verdict to give)."""
    alpha = f"{ALPHA:g}"
    if tested == 0:
        return (
            f"diff = A - B. No row has a test: none has both cells finished with at least {MIN_SEEDS} seeds "
            "(or pairs), so there is no interval, p-value, correction or verdict (docs/compare.md)."
        )
    which = "the suite's declared family" if family else "this table"
    adjusted = "p adj = p (t)" + ("," if correction == "none" else "") + f" {correction_rule(correction, size, which)}"
    level = alpha if correction == "none" else f"{alpha}/{size}"
    equivalent = f"; equivalent within +-{margin:g} when the TOST p < {alpha}" if margin is not None else ""
    return (
        "diff = A - B. Paired t on per-seed differences when both ran the same seeds (with the exact sign-flip p "
        f"for n <= 10), else Welch's t; {adjusted}. Verdict: p adj < {alpha} -> A better (diff > 0) or B better, "
        f"else no evidence{equivalent}. detectable: the difference found with 80% power at alpha {level}."
    )


def rows_caption(rows: list[Row], correction: str, size: int, margin: float | None, family: bool) -> str:
    """The caption of the table of ``rows``: ``caption`` with the number of them that had a test."""
    return caption(correction, size, margin, family, sum(row.tested for row in rows))


def setting_differences(records: list[dict[str, Any]], a: str, bs: list[str]) -> list[str]:
    """One note per B whose newest setting differs from A's at some column (``compare --b-results``: the
    same method in two stores compares the same cells only where their setting hashes agree)."""

    def newest(method: str, column: str) -> str | None:
        mine = [r for r in records if r.get("method") == method and r.get("column") == column]
        return latest_setting(mine)[0].get("setting_hash") if mine else None

    columns = sorted({str(r.get("column")) for r in records}, key=lambda c: (len(c), c))
    a_setting = {c: newest(a, c) for c in columns}
    notes = []
    for b in bs:
        b_setting = {c: newest(b, c) for c in columns}
        differ = [c for c in columns if None not in (a_setting[c], b_setting[c]) and a_setting[c] != b_setting[c]]
        if differ:
            notes.append(f"other settings: {b} at {', '.join(differ)} holds another setting than {a} (its setting "
                         f"hash differs), so these are not the same cells trained twice")  # fmt: skip
    return notes
