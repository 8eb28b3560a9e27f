"""Paper-style tables from the results store: rows = methods, columns = dims (or ratios), mean +- std (n).

Any metric of a record can be tabulated: a key of its ``metrics`` or of its ``diagnostics``
(docs/diagnostics.md). The renderers (Markdown, CSV, LaTeX, HTML) are in ``protobench.reporting.formats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from protobench.core.errors import UserError, did_you_mean
from protobench.reporting.stats import prediction_interval
from protobench.reporting.table import (
    ALIASES,
    DEFAULT_METRICS,
    PAPER_CHECK_MIN_SEEDS,
    Table,
    correction_rule,
    is_number,
    latest_setting,
    metric_info,
    provenance_notes,
    record_value,
)
from protobench.suite.definition import Suite


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
            row["paper_pi"] = None  # in | out | n < 3: the paper's figure against our prediction interval
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
                    row["paper_pi"] = paper_check(values, paper)
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
    if cells["paper_pi"].notna().any():
        notes.append(paper_note(suite.paper_source if suite else ""))
    if empty := [c for c in columns if (cells.loc[cells["column"] == c, "status"] == "missing").all()]:
        named = ", ".join(f"d={c}" if c.isdigit() else c for c in empty)
        notes.append(f"no records at {named} (- in every row): the suite has them, none has been run yet")
    epochs = sorted({r["config"]["train"]["epochs"] for r in records if r.get("status") == "ok"})
    described = f"{metric_info(metric).title}, mean +- std over seeds (n)"
    title = f"{suite_name}: {described}, epochs {', '.join(map(str, epochs))}"
    return Table(suite_name, metric, title, cells, methods, columns, notes)


def paper_check(values: list[float], paper: float | None) -> str | None:
    """Whether the paper's figure, one run, lies in the 95% prediction interval for one new run of ours (the
    t interval of ``values`` widened by sqrt(1 + 1/n), docs/compare.md): ``in``, ``out``, or ``n < 3`` with
    fewer seeds; None without a paper figure."""
    if paper is None:
        return None
    if len(values) < PAPER_CHECK_MIN_SEEDS:
        return f"n < {PAPER_CHECK_MIN_SEEDS}"
    low, high = prediction_interval(values)
    return "in" if low <= paper <= high else "out"


def paper_note(source: str) -> str:
    """The note under a table with a paper column: what the delta and its mark mean, and where the paper's figure
    comes from; a figure taken at the best test epoch (the suite's ``paper_source`` says so) is named as such."""
    text = (
        "delta = our mean - paper; (in PI) / (out of PI): the paper's figure inside / outside the 95% prediction "
        f"interval for one new run of ours (t x s x sqrt(1 + 1/n)); (n < {PAPER_CHECK_MIN_SEEDS}): too few seeds "
        "for one"
    )
    if "best test epoch" in source.lower():
        text += f"; the paper reports one run, selected at its best test epoch ({source})"
    elif source:
        text += f"; the paper's figures: {source}"
    return text + " (docs/compare.md)"


def render(tables: list[Table], fmt: str, images: Sequence[str | Path] | None = None) -> str:
    """Render ``tables`` as md, csv, latex or html (``images``: PNG files inlined in html; see report_formats)."""
    from protobench.reporting.formats import render as render_tables

    return render_tables(tables, fmt, images)


#: ``report --vs M`` markers: how the row's method compares with M in that cell (docs/compare.md).
VS_MARKERS = {"better": ">", "worse": "<", "no evidence": "~"}


def build_tables(
    records: list[dict[str, Any]],
    suites: dict[str, Suite | None],
    vs: str | None = None,
    metrics: Sequence[str] | None = None,
    correction: str = "holm",
) -> list[Table]:
    """A table per suite and metric (record keys; default: the final-epoch and, where validation exists, the
    validation-selected accuracy); with ``vs``, every other method's cells marked by ``compare``'s verdict, the
    p-values of each table corrected together by ``correction``."""
    tables = []
    for name, suite in suites.items():
        for metric in metrics or DEFAULT_METRICS:
            if (table := summarise(name, records, metric, suite)) is not None:
                if vs is not None:
                    mark_against(table, records, vs, suite, correction)
                tables.append(table)
    return tables


def mark_against(
    table: Table, records: list[dict[str, Any]], vs: str, suite: Suite | None, correction: str = "holm"
) -> None:
    """Add to each cell of ``table`` the verdict of its method against ``vs`` (>, <, ~; none with too few seeds),
    as ``compare`` gives it: one call over every cell of the table, so its family is the table's tested cells,
    corrected by ``correction`` (docs/compare.md). ``compare`` knows the accuracy metrics only: other tables
    get a note instead of markers."""
    from protobench.reporting.comparison import ALPHA, METRIC_KEYS, MIN_SEEDS, NO_EVIDENCE, comparison

    metric = next((name for name, key in METRIC_KEYS.items() if key == table.metric), None)
    if metric is None:
        known = ", ".join(METRIC_KEYS)
        table.notes.append(f"--vs {vs}: not applied to {table.metric} (compare knows only {known})")
        return
    others = [m for m in table.methods if m != vs]
    if vs not in table.methods or not others:
        table.notes.append(f"--vs {vs}: no records of {vs} in this table")
        return
    rows, _, size = comparison(records, table.suite, vs, others, metric, suite, correction)
    marks = {}
    for row in rows:
        if row.verdict == f"{row.b} better":
            marks[row.b, row.column] = VS_MARKERS["better"]
        elif row.verdict == f"{vs} better":
            marks[row.b, row.column] = VS_MARKERS["worse"]
        elif row.verdict == NO_EVIDENCE:
            marks[row.b, row.column] = VS_MARKERS["no evidence"]
    table.cells["marker"] = [
        marks.get((m, c), "") for m, c in zip(table.cells["method"], table.cells["column"], strict=True)
    ]
    if not any(row.tested for row in rows):
        table.notes.append(
            f"vs {vs}: no cell has a test (each needs at least {MIN_SEEDS} seeds of its method and of {vs}), "
            "so none is marked (docs/compare.md)"
        )
        return
    rule = correction_rule(correction, size, "this table")
    table.notes.append(
        f"vs {vs}: > better, < worse (p adj < {ALPHA:g}), ~ no evidence; p adj = p (t) {rule} (paired t by seed "
        f"where the seeds match, else Welch; unmarked: fewer than {MIN_SEEDS} seeds); docs/compare.md"
    )
