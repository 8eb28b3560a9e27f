"""Paper-style tables from the results store: rows = methods, columns = dims (or ratios), mean +- std (n)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from protobench.suites import Suite

METRICS = {
    "test_accuracy": "final-epoch test accuracy (%)",
    "test_accuracy_at_best_val": "test accuracy at the best validation epoch (%)",
}
FORMATS = ("md", "csv", "latex")


@dataclass
class Table:
    """One summary table of a suite and metric."""

    suite: str
    metric: str
    title: str
    cells: pd.DataFrame  # long form: method, column, mean, std, n, status, paper
    methods: list[str]
    columns: list[str]
    notes: list[str]


def latest_setting(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of one (method, column)'s records, those of the most recently finished setting (all its seeds)."""
    newest = max(records, key=lambda r: r.get("finished_at", ""))
    return [r for r in records if r.get("setting_hash") == newest.get("setting_hash")]


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """A note per kind of mixed provenance among ``records``: several code commits, several versions."""
    notes = []
    commits = sorted({r.get("git_commit") or "unknown" for r in records})
    if len(commits) > 1:
        short = [c if c == "unknown" else c[:10] + ("-dirty" if c.endswith("-dirty") else "") for c in commits]
        notes.append(f"mixed code: records from {len(commits)} commits ({', '.join(short)})")
    versions = sorted({(r.get("versions") or {}).get("protobench", "unknown") for r in records})
    if len(versions) > 1:
        notes.append(f"mixed code: records from protobench versions {', '.join(versions)}")
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
    ignored = 0
    for method in methods:
        for column in columns:
            group = [r for r in records if r["method"] == method and r["column"] == column]
            paper = (suite.paper.get(method, {}).get(column) if suite else None) if metric == "test_accuracy" else None
            row: dict[str, Any] = {"method": method, "column": column, "mean": None, "std": None, "n": 0}
            row["paper"] = paper
            if not group:
                row["status"] = "missing"
            else:
                chosen = latest_setting(group)
                ignored += len(group) - len(chosen)
                ok = [r for r in chosen if r.get("status") == "ok" and r["metrics"].get(metric) is not None]
                if ok:
                    shown += ok
                    values = [float(r["metrics"][metric]) for r in ok]
                    row.update(status="ok", mean=sum(values) / len(values), n=len(values))
                    row["std"] = pd.Series(values).std(ddof=1) if len(values) > 1 else 0.0
                elif any(r.get("status") == "n/a" for r in chosen):
                    row["status"] = "n/a"
                    reason = next(r.get("reason") for r in chosen if r.get("status") == "n/a")
                    note = f"n/a: {method} at {column}: {reason}"
                    if note not in notes:
                        notes.append(note)
                elif any(r.get("status") == "error" for r in chosen):
                    row["status"] = "error"
                else:
                    row["status"] = "missing"
            rows.append(row)
    if ignored:
        notes.append(f"{ignored} record(s) of older settings of the same cells are not shown")
    devices = sorted({f"{r.get('device', '?')} ({r['config'].get('precision', '?')})" for r in shown})
    if devices:
        notes.append(f"ran on: {'; '.join(devices)}")
    notes += provenance_notes(shown)
    cells = pd.DataFrame(rows)
    if not (cells["status"] == "ok").any():
        return None
    epochs = sorted({r["config"]["train"]["epochs"] for r in records if r.get("status") == "ok"})
    title = f"{suite_name}: {METRICS[metric]}, mean +- std over seeds (n), epochs {', '.join(map(str, epochs))}"
    return Table(suite_name, metric, title, cells, methods, columns, notes)


def format_cell(row: pd.Series) -> str:
    """``86.21 +- 0.35 (3)`` (and a ``--vs`` marker), ``n/a``, ``error`` or ``-``."""
    if row["status"] == "ok":
        marker = row.get("marker") or ""
        return f"{row['mean']:.2f} +- {row['std']:.2f} ({row['n']}){' ' + marker if marker else ''}"
    return {"n/a": "n/a", "error": "error"}.get(row["status"], "-")


def grid(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the human-readable table (paper and delta columns where numbers exist)."""
    has_paper = table.cells["paper"].notna().any()
    header = ["method"]
    for column in table.columns:
        label = f"d={column}" if column.isdigit() else column
        header.append(label)
        if has_paper:
            header += [f"{label} paper", f"{label} delta"]
    rows = []
    for method in table.methods:
        line = [method]
        for column in table.columns:
            row = table.cells[(table.cells["method"] == method) & (table.cells["column"] == column)].iloc[0]
            line.append(format_cell(row))
            if has_paper:
                paper = row["paper"]
                has = paper is not None and not (isinstance(paper, float) and math.isnan(paper))
                line.append(f"{paper:.2f}" if has else "-")
                line.append(f"{row['mean'] - paper:+.2f}" if has and row["status"] == "ok" else "-")
        rows.append(line)
    return header, rows


def render_markdown(table: Table) -> str:
    """A GitHub Markdown table with its title and notes."""
    header, rows = grid(table)
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [f"\n_{n}_" for n in table.notes]
    return "\n".join(lines) + "\n"


def render_latex(table: Table) -> str:
    """A booktabs tabular with +- as $\\pm$."""
    header, rows = grid(table)

    def tex(s: str) -> str:
        s = s.replace("+-", "$\\pm$").replace("_", "\\_").replace("%", "\\%")
        return s.replace(" >", " $>$").replace(" <", " $<$").replace(" ~", " $\\sim$")

    lines = [
        f"% {table.title}",
        "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        "\\toprule",
        " & ".join(tex(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(tex(c) for c in r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_csv(tables: list[Table]) -> str:
    """All tables in long form: suite, metric, method, column, mean, std, n, status, paper."""
    frames = []
    for table in tables:
        frame = table.cells.copy()
        frame.insert(0, "metric", table.metric)
        frame.insert(0, "suite", table.suite)
        frames.append(frame)
    return pd.concat(frames).to_csv(index=False, float_format="%.4f")


def render(tables: list[Table], fmt: str) -> str:
    """Render ``tables`` as md, csv or latex."""
    if fmt == "csv":
        return render_csv(tables)
    renderer = render_markdown if fmt == "md" else render_latex
    return "\n".join(renderer(t) for t in tables)


#: ``report --vs M`` markers: how the row's method compares with M in that cell (docs/compare.md).
VS_MARKERS = {"better": ">", "worse": "<", "no evidence": "~"}


def build_tables(records: list[dict[str, Any]], suites: dict[str, Suite | None], vs: str | None = None) -> list[Table]:
    """The final-epoch table and, where validation exists, the validation-selected table of each suite;
    with ``vs``, every other method's cells marked by ``compare``'s verdict against it."""
    tables = []
    for name, suite in suites.items():
        for metric in METRICS:
            if (table := summarise(name, records, metric, suite)) is not None:
                if vs is not None:
                    mark_against(table, records, vs, suite)
                tables.append(table)
    return tables


def mark_against(table: Table, records: list[dict[str, Any]], vs: str, suite: Suite | None) -> None:
    """Add to each cell of ``table`` the verdict of its method against ``vs`` (>, <, ~; none with too few seeds)."""
    from protobench.compare import METRIC_KEYS, NO_EVIDENCE, compare

    metric = next(name for name, key in METRIC_KEYS.items() if key == table.metric)
    others = [m for m in table.methods if m != vs]
    if vs not in table.methods or not others:
        table.notes.append(f"--vs {vs}: no records of {vs} in this table")
        return
    marks = {}
    for row in compare(records, table.suite, vs, others, metric, suite):
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
        "match, else Welch; unmarked: fewer than 3 seeds); docs/compare.md"
    )
