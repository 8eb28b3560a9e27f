"""``protobench compare SUITE A B[,B2,...]`` or ``protobench compare SUITE --family``: is A better than B at each
column? Difference, 95% CI, raw and corrected p, the difference the design could detect, and a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from protobench.reporting.comparison import Row


def compare_command(
    suite: Annotated[
        str,
        typer.Argument(
            metavar="SUITE",
            help="The suite whose records are compared: its name, or its suite file (records under its 'name:').",
        ),
    ],
    a: Annotated[str | None, typer.Argument(metavar="A", help="Method A (not with --family).")] = None,
    b: Annotated[
        str | None,
        typer.Argument(metavar="B[,B2,...]", help="Method B, or several comma-separated (A is compared with each)."),
    ] = None,
    family: Annotated[
        bool, typer.Option("--family", help="Test the comparisons declared in the suite file's 'family' key instead.")
    ] = False,
    correction: Annotated[
        str, typer.Option(help="Multiple-comparison correction over the family: none, holm or bh (Benjamini-Hochberg).")
    ] = "holm",
    margin: Annotated[
        float | None,
        typer.Option(help="Equivalence margin in points: also test |A - B| < M (TOST at 0.05).", show_default=False),
    ] = None,
    results: Annotated[Path, typer.Option(help="The results store to read.")] = Path("results"),
    b_results: Annotated[
        Path | None,
        typer.Option(
            help="Read B's records from this store (A's from --results): a method against itself in two "
            "stores, e.g. packed against solo, GPU against CPU.",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="final (last-epoch test accuracy) or val-selected (at the best validation epoch).")
    ] = "final",
    seeds: Annotated[
        str | None, typer.Option(help="Only the records of these seeds, comma-separated, e.g. 5,6,7 (default: all).")
    ] = None,
    without_reused: Annotated[
        bool,
        typer.Option(
            "--without-reused", help="Leave out, in each suite, the seeds at which a record was copied from another."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows and notes as JSON for scripts.")] = False,
) -> None:
    """Compare method A with each B per column (or a suite's declared family): mean difference, 95% CI, raw and
    corrected p-values, the detectable difference and a verdict (docs/compare.md)."""
    from protobench.api import comparison
    from protobench.cli.flags import check_results_flag, parse_list, record_warner

    check_results_flag(results, must_exist=True)
    found = comparison(suite, a, b, results, family=family, metric=metric, correction=correction, margin=margin,
                       seeds=parse_list(seeds, int, "--seeds"), without_reused=without_reused,
                       on_unreadable=record_warner(), b_results=b_results)  # fmt: skip
    if as_json:
        from protobench.reporting.comparison import ALPHA

        answer = {**found.request, "family_size": found.size, "alpha": ALPHA, "caption": found.caption}
        typer.echo(json.dumps({**answer, "rows": [r.as_dict() for r in found.rows], "notes": found.notes}, indent=1))
        return
    print_rows(found.rows, found.title, found.notes, found.caption, margin)


def print_rows(rows: list[Row], title: str, lines: list[str], footnote: str, margin: float | None = None) -> None:
    """The comparison as a rich table, one row per (B, column) (and A and suite when they vary), then the notes."""
    from rich.table import Table

    from protobench.cli.flags import page_console
    from protobench.reporting.comparison_table import table as comparison_table

    headers, cells = comparison_table(rows, margin)
    table = Table(title=title, caption=footnote)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console = page_console()
    console.print(table)
    for line in lines:
        console.print(line, markup=False, highlight=False)
