"""``protobench compare SUITE A B[,B2,...]``: is A better than B at each column? Difference, 95% CI, verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from protobench.compare import Row

CAPTION = (
    "diff = A - B. Paired t on per-seed differences when both ran the same seeds (with the exact sign-flip p "
    "for n <= 10), else Welch's t. Verdict: 95% CI above 0 -> A better, below 0 -> B better, "
    "else no evidence. No correction for multiple comparisons."
)


def compare_command(
    suite: Annotated[
        str, typer.Argument(metavar="SUITE", help="The suite whose records are compared (its name in the store).")
    ],
    a: Annotated[str, typer.Argument(metavar="A", help="Method A.")],
    b: Annotated[
        str,
        typer.Argument(metavar="B[,B2,...]", help="Method B, or several comma-separated (A is compared with each)."),
    ],
    results: Annotated[Path, typer.Option(help="The results store to read.")] = Path("results"),
    metric: Annotated[
        str, typer.Option(help="final (last-epoch test accuracy) or val-selected (at the best validation epoch).")
    ] = "final",
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows and notes as JSON for scripts.")] = False,
) -> None:
    """Compare method A with each B per column: mean difference, 95% CI, p-values and a verdict."""
    from protobench.cli.flags import check_results_flag, record_warner
    from protobench.compare import check_request, comparison, metric_key
    from protobench.results import iter_records
    from protobench.suites import available_suites, load_suite

    key = metric_key(metric)
    bs = list(dict.fromkeys(m.strip() for m in b.split(",") if m.strip()))
    check_results_flag(results, must_exist=True)
    records = list(iter_records(results, [suite], record_warner()))
    check_request(records, suite, a, bs, str(results))
    known = load_suite(suite) if suite in available_suites() else None
    rows, lines = comparison(records, suite, a, bs, metric, known)
    if as_json:
        answer = {"suite": suite, "a": a, "b": bs, "metric": metric, "metric_key": key}
        typer.echo(json.dumps({**answer, "rows": [r.as_dict() for r in rows], "notes": lines}, indent=1))
        return
    print_rows(rows, f"{suite}: A = {a} vs B = {', '.join(bs)}, {metric} test accuracy (%)", lines)


def number(value: float | None, fmt: str) -> str:
    """``value`` formatted, or ``-`` when there is none."""
    return "-" if value is None else format(value, fmt)


def print_rows(rows: list[Row], title: str, lines: list[str]) -> None:
    """The comparison as a rich table, one row per (B, column), then the notes."""
    from rich.table import Table

    from protobench.cli.flags import page_console

    table = Table(title=title, caption=CAPTION)
    for name in ("B", "column", "A mean", "B mean", "diff", "95% CI", "p (t)", "p (sign-flip)", "test", "verdict"):
        table.add_column(name, overflow="fold")
    for r in rows:
        ci = "-" if r.ci_low is None else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        table.add_row(
            r.b, r.column, number(r.mean_a, ".2f"), number(r.mean_b, ".2f"), number(r.diff, "+.2f"), ci,
            number(r.p_value, ".3g"), number(r.p_sign_flip, ".4g"), r.test or "-", r.verdict,
        )  # fmt: skip
    console = page_console()
    console.print(table)
    for line in lines:
        console.print(line, markup=False, highlight=False)
