"""``protobench compare``'s table as columns: each column is one record of its header and how a row fills its
cell, so a header cannot go out of step with its cells (docs/compare.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protobench.reporting.comparison import Row


def number(value: float | None, fmt: str) -> str:
    """``value`` formatted, or ``-`` when there is none."""
    return "-" if value is None else format(value, fmt)


def interval(row: Row) -> str:
    """The 95% CI as ``[low, high]``, or ``-`` when there is none."""
    return "-" if row.ci_low is None or row.ci_high is None else f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}]"


@dataclass(frozen=True)
class Column:
    """One column of the table: its header and its cell for a row."""

    header: str
    cell: Callable[[Row], str]


def table_columns(rows: list[Row], margin: float | None = None) -> list[Column]:
    """The columns, in order: suite and A only when they vary over ``rows``, the TOST p only with a ``margin``."""
    columns = [Column("suite", lambda r: r.suite)] if len({r.suite for r in rows}) > 1 else []
    columns += [Column("A", lambda r: r.a)] if len({r.a for r in rows}) > 1 else []
    columns += [
        Column("B", lambda r: r.b),
        Column("column", lambda r: r.column),
        Column("A mean", lambda r: number(r.mean_a, ".2f")),
        Column("B mean", lambda r: number(r.mean_b, ".2f")),
        Column("diff", lambda r: number(r.diff, "+.2f")),
        Column("95% CI", interval),
        Column("p (t)", lambda r: number(r.p_value, ".3g")),
        Column("p adj", lambda r: number(r.p_adjusted, ".3g")),
        Column("p (sign-flip)", lambda r: number(r.p_sign_flip, ".4g")),
        Column("detectable", lambda r: "-" if r.detectable is None else f"+-{r.detectable:.2f}"),
    ]
    if margin is not None:
        columns.append(Column(f"p (TOST +-{margin:g})", lambda r: number(r.p_equivalence, ".3g")))
    return [*columns, Column("test", lambda r: r.test or "-"), Column("verdict", lambda r: r.verdict)]


def table(rows: list[Row], margin: float | None = None) -> tuple[list[str], list[list[str]]]:
    """The headers and, per row, its cells, both from the same ``table_columns``."""
    columns = table_columns(rows, margin)
    return [c.header for c in columns], [[c.cell(r) for c in columns] for r in rows]
