"""Paper-style tables from the results store: rows = methods, columns = dims (or ratios), mean +- std (n).

Any metric of a record can be tabulated: a key of its ``metrics`` or of its ``diagnostics``
(docs/diagnostics.md). The renderers (Markdown, CSV, LaTeX, HTML) are in ``protobench.report_formats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from protobench.errors import UserError, did_you_mean
from protobench.stats import mean_interval
from protobench.suites import Suite


@dataclass(frozen=True)
class Metric:
    """How a metric is titled, which direction is best (None: neither) and how many decimals it shows."""

    title: str
    better: str | None = "higher"  # "higher", "lower" or None (no best is marked)
    digits: int = 3


#: Every metric the report knows by name; the one place for titles, precision and which way is better.
#: Other keys found in records are tabulated too, titled by their key, 3 decimals, no best marked.
METRICS: dict[str, Metric] = {
    "test_accuracy": Metric("final-epoch test accuracy (%)", "higher", 2),
    "test_accuracy_at_best_val": Metric("test accuracy at the best validation epoch (%)", "higher", 2),
    "val_accuracy": Metric("val_accuracy (final-epoch validation accuracy, %)", "higher", 2),
    "best_val_accuracy": Metric("best_val_accuracy (best validation accuracy over the epochs, %)", "higher", 2),
    "best_val_epoch": Metric("best_val_epoch (epoch of the best validation accuracy)", None, 1),
    "train_accuracy": Metric("train_accuracy (final-epoch training accuracy, %)", "higher", 2),
    "train_loss": Metric("train_loss (final-epoch training loss, lower = better)", "lower", 3),
    "train_images_per_second": Metric("train_images_per_second (training throughput, images/s)", "higher", 0),
    "nc1": Metric("nc1 (within / between class variability, lower = tighter)", "lower", 3),
    "class_mean_anchor_cosine": Metric(
        "class_mean_anchor_cosine (cosine of each class mean with its anchor, higher = better aligned)", "higher", 3
    ),
    "class_mean_cosine_mean": Metric(
        "class_mean_cosine_mean (mean cosine between class means, lower = more spread; a simplex has -1/(K-1))",
        "lower",
        3,
    ),
    "class_mean_cosine_std": Metric(
        "class_mean_cosine_std (spread of the cosines between class means; a simplex has 0)", None, 3
    ),
    "anchor_min_angle_degrees": Metric(
        "anchor_min_angle_degrees (smallest angle between two anchors, degrees, higher = more separated)", "higher", 3
    ),
    "ece": Metric("ece (expected calibration error, 15 bins, lower = better calibrated)", "lower", 3),
}
#: Fewer seeds than this: the paper column says "n < 3" instead of whether the paper's figure is in our interval.
PAPER_CHECK_MIN_SEEDS = 3
#: The tables a report shows without ``--metric``.
DEFAULT_METRICS = ("test_accuracy", "test_accuracy_at_best_val")
#: ``--metric`` names besides the record keys (the same names as ``protobench compare --metric``).
ALIASES = {"final": "test_accuracy", "val-selected": "test_accuracy_at_best_val"}
FORMATS = ("md", "csv", "latex", "html")


def metric_info(key: str) -> Metric:
    """The title, direction and precision of ``key`` (a key no one described: its name, 3 decimals)."""
    return METRICS.get(key) or Metric(key, None, 3)


def record_value(record: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(whether the record has ``key`` at all, its value): looked up in ``metrics``, then ``diagnostics``."""
    metrics, diagnostics = record.get("metrics") or {}, record.get("diagnostics") or {}
    if metrics.get(key) is not None:
        return True, metrics[key]
    if key in diagnostics:
        return True, diagnostics[key]
    return key in metrics, None


def is_number(value: Any) -> bool:
    """True for an int or float (not a bool): a value a table can average."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def available_metrics(records: Iterable[dict[str, Any]]) -> list[str]:
    """The ``--metric`` names these records allow: the aliases, then every key of their metrics and diagnostics
    that holds a number (or None) somewhere."""
    keys = {
        k
        for r in records
        for part in ("metrics", "diagnostics")
        for k, v in (r.get(part) or {}).items()
        if v is None or is_number(v)
    }
    return [*ALIASES, *sorted(keys)]


def resolve_metrics(names: Sequence[str], records: list[dict[str, Any]]) -> list[str]:
    """The record keys of ``--metric`` names (aliases resolved, duplicates dropped); UserError for unknown ones."""
    allowed = available_metrics(records)
    keys: list[str] = []
    for name in names:
        if name not in allowed:
            hint = did_you_mean(name, allowed)
            raise UserError(f"--metric '{name}' is unknown{hint}; use one of {', '.join(allowed)}")
        key = ALIASES.get(name, name)
        if key not in keys:
            keys.append(key)
    return keys


@dataclass
class Table:
    """One summary table of a suite and metric."""

    suite: str
    metric: str
    title: str
    cells: pd.DataFrame  # long form: method, column, mean, std, n, paper, paper_ci, status
    methods: list[str]
    columns: list[str]
    notes: list[str]


def latest_setting(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of one (method, column)'s records, those of the most recently finished setting (all its seeds)."""
    newest = max(records, key=lambda r: r.get("finished_at", ""))
    return [r for r in records if r.get("setting_hash") == newest.get("setting_hash")]


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """A note per kind of mixed provenance among ``records``: several code commits, several versions,
    CPU-trained records from several CPU models (records made before the CPU was recorded don't count)."""
    notes = []
    commits = sorted({r.get("git_commit") or "unknown" for r in records})
    if len(commits) > 1:
        short = [c if c == "unknown" else c[:10] + ("-dirty" if c.endswith("-dirty") else "") for c in commits]
        notes.append(f"mixed code: records from {len(commits)} commits ({', '.join(short)})")
    versions = sorted({(r.get("versions") or {}).get("protobench", "unknown") for r in records})
    if len(versions) > 1:
        notes.append(f"mixed code: records from protobench versions {', '.join(versions)}")
    cpus = sorted({r["cpu"] for r in records if r.get("cpu") and str(r.get("device", "")).startswith("cpu")})
    if len(cpus) > 1:
        notes.append(
            f"mixed hosts: CPU records from {len(cpus)} CPU models ({'; '.join(cpus)}); "
            "numbers can differ in the last digits between them"
        )
    return notes


def summarise(suite_name: str, records: list[dict[str, Any]], metric: str, suite: Suite | None) -> Table | None:
    """Aggregate ``records`` of one suite into a Table of ``metric`` (None when nothing to show)."""
    records = [r for r in records if r.get("suite") == suite_name]
    if not records:
        return None
    methods = list(suite.methods) if suite else []
    methods += sorted({r["method"] for r in records} - set(methods))
    columns = suite.columns() if suite else []
    extra = {r["column"] for r in records} - set(columns)
    columns += sorted(extra, key=lambda c: (len(c), c))
    rows = []
    shown: list[dict[str, Any]] = []  # the records the table aggregates
    notes: list[str] = []
    ignored = unrecorded = 0
    for method in methods:
        for column in columns:
            group = [r for r in records if r["method"] == method and r["column"] == column]
            paper = (suite.paper.get(method, {}).get(column) if suite else None) if metric == "test_accuracy" else None
            row: dict[str, Any] = {"method": method, "column": column, "mean": None, "std": None, "n": 0}
            row["paper"] = paper
            row["paper_ci"] = None  # in | out | n < 3: the paper's figure against our 95% interval (paper_check)
            if not group:
                row["status"] = "missing"
            else:
                chosen = latest_setting(group)
                ignored += len(group) - len(chosen)
                for r in chosen:
                    if r.get("status") == "error":  # shown even when the other seeds are in the mean
                        epoch = f", epoch {r['failed_epoch']}" if r.get("failed_epoch") else ""
                        notes.append(f"failed: {method} at {column}, seed {r.get('seed')}{epoch}: {r.get('reason')}")
                done = [r for r in chosen if r.get("status") == "ok"]
                found = [(r, *record_value(r, metric)) for r in done]
                unrecorded += sum(not has for _, has, _ in found)
                ok = [(r, value) for r, _, value in found if is_number(value)]
                if ok:
                    shown += [r for r, _ in ok]
                    values = [float(value) for _, value in ok]
                    row.update(status="ok", mean=sum(values) / len(values), n=len(values))
                    row["std"] = pd.Series(values).std(ddof=1) if len(values) > 1 else 0.0
                    row["paper_ci"] = paper_check(values, paper)
                elif any(r.get("status") == "n/a" for r in chosen):
                    row["status"] = "n/a"
                    reason = next(r.get("reason") for r in chosen if r.get("status") == "n/a")
                    note = f"n/a: {method} at {column}: {reason}"
                    if note not in notes:
                        notes.append(note)
                elif any(r.get("status") == "error" for r in chosen):
                    row["status"] = "error"
                    reason = next(str(r.get("reason", "")) for r in chosen if r.get("status") == "error")
                    row["reason"] = reason.split(":")[0]
                else:
                    row["status"] = "missing"
            rows.append(row)
    if ignored:
        notes.append(f"{ignored} record(s) of older settings of the same cells are not shown")
    if unrecorded:
        notes.append(f"{unrecorded} record(s) have no {metric} (made before it was recorded)")
    devices = sorted({f"{r.get('device', '?')} ({r['config'].get('precision', '?')})" for r in shown})
    if devices:
        notes.append(f"ran on: {'; '.join(devices)}")
    notes += provenance_notes(shown)
    cells = pd.DataFrame(rows)
    if not (cells["status"] == "ok").any():
        return None
    if cells["paper_ci"].notna().any():
        notes.append(
            "delta = our mean - paper; (in CI) / (out of CI): the paper's figure inside / outside the 95% t interval "
            f"of our mean over seeds; (n < {PAPER_CHECK_MIN_SEEDS}): too few seeds for one (docs/compare.md)"
        )
    if empty := [c for c in columns if (cells.loc[cells["column"] == c, "status"] == "missing").all()]:
        named = ", ".join(f"d={c}" if c.isdigit() else c for c in empty)
        notes.append(f"no records at {named} (- in every row): the suite has them, none has been run yet")
    epochs = sorted({r["config"]["train"]["epochs"] for r in records if r.get("status") == "ok"})
    described = f"{metric_info(metric).title}, mean +- std over seeds (n)"
    title = f"{suite_name}: {described}, epochs {', '.join(map(str, epochs))}"
    return Table(suite_name, metric, title, cells, methods, columns, notes)


def paper_check(values: list[float], paper: float | None) -> str | None:
    """Whether the paper's figure lies in the 95% one-sample t interval of the mean of ``values``: ``in``,
    ``out``, or ``n < 3`` with fewer seeds; None without a paper figure."""
    if paper is None:
        return None
    if len(values) < PAPER_CHECK_MIN_SEEDS:
        return f"n < {PAPER_CHECK_MIN_SEEDS}"
    low, high = mean_interval(values)
    return "in" if low <= paper <= high else "out"


def best_cells(table: Table) -> set[tuple[str, str]]:
    """The (method, column) cells holding the best mean of their column, as shown (ties: all of them);
    none where the metric has no better direction or a column has fewer than two values."""
    info = metric_info(table.metric)
    if info.better is None:
        return set()
    best = set()
    ok = table.cells[table.cells["status"] == "ok"]
    for column in table.columns:
        here = ok[ok["column"] == column]
        if len(here) < 2:
            continue
        shown = {m: round(float(v), info.digits) for m, v in zip(here["method"], here["mean"], strict=True)}
        target = max(shown.values()) if info.better == "higher" else min(shown.values())
        best |= {(m, column) for m, v in shown.items() if v == target}
    return best


def render(tables: list[Table], fmt: str, images: Sequence[str | Path] | None = None) -> str:
    """Render ``tables`` as md, csv, latex or html (``images``: PNG files inlined in html; see report_formats)."""
    from protobench.report_formats import render as render_tables

    return render_tables(tables, fmt, images)


#: ``report --vs M`` markers: how the row's method compares with M in that cell (docs/compare.md).
VS_MARKERS = {"better": ">", "worse": "<", "no evidence": "~"}


def build_tables(
    records: list[dict[str, Any]],
    suites: dict[str, Suite | None],
    vs: str | None = None,
    metrics: Sequence[str] | None = None,
) -> list[Table]:
    """A table per suite and metric (record keys; default: the final-epoch and, where validation exists, the
    validation-selected accuracy); with ``vs``, every other method's cells marked by ``compare``'s verdict."""
    tables = []
    for name, suite in suites.items():
        for metric in metrics or DEFAULT_METRICS:
            if (table := summarise(name, records, metric, suite)) is not None:
                if vs is not None:
                    mark_against(table, records, vs, suite)
                tables.append(table)
    return tables


def mark_against(table: Table, records: list[dict[str, Any]], vs: str, suite: Suite | None) -> None:
    """Add to each cell of ``table`` the verdict of its method against ``vs`` (>, <, ~; none with too few seeds).
    ``compare`` knows the accuracy metrics only: other tables get a note instead of markers."""
    from protobench.compare import METRIC_KEYS, NO_EVIDENCE, compare

    metric = next((name for name, key in METRIC_KEYS.items() if key == table.metric), None)
    if metric is None:
        known = ", ".join(METRIC_KEYS)
        table.notes.append(f"--vs {vs}: not applied to {table.metric} (compare knows only {known})")
        return
    others = [m for m in table.methods if m != vs]
    if vs not in table.methods or not others:
        table.notes.append(f"--vs {vs}: no records of {vs} in this table")
        return
    marks = {}
    for row in compare(records, table.suite, vs, others, metric, suite, correction="none"):
        if row.verdict == f"{row.b} better":
            marks[row.b, row.column] = VS_MARKERS["better"]
        elif row.verdict == f"{vs} better":
            marks[row.b, row.column] = VS_MARKERS["worse"]
        elif row.verdict == NO_EVIDENCE:
            marks[row.b, row.column] = VS_MARKERS["no evidence"]
    table.cells["marker"] = [
        marks.get((m, c), "") for m, c in zip(table.cells["method"], table.cells["column"], strict=True)
    ]
    table.notes.append(
        f"vs {vs}: > better, < worse, ~ no evidence (95% CI of the difference, paired by seed where the seeds "
        "match, else Welch; each cell uncorrected; unmarked: fewer than 3 seeds); docs/compare.md"
    )
