"""`protobench report`: paper-style tables of a results store (protobench/reporting/report.py), as Markdown, CSV,
LaTeX or HTML, with plots (protobench/reporting/plots.py); `run` prints its suite's table the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protobench.cli.flags import check_output_flags, check_results_flag, record_warner
from protobench.core.errors import UserError


def print_report(
    names: list[str],
    results: Path,
    fmt: str,
    out: Path | None,
    known: dict | None = None,
    device: str | None = None,
    vs: str | None = None,
    metrics: list[str] | None = None,
    plots: Path | None = None,
    correction: str = "holm",
) -> None:
    """Build the tables of ``names`` from ``results`` (optionally only one device's, of the ``metrics``
    named as ``--metric`` takes them, and marked against method ``vs`` under ``correction``) and print or write them;
    with ``plots``, write every plot of each suite there too (inlined in an html page)."""
    from protobench.api import report_tables
    from protobench.reporting.report import render

    built = report_tables(names, results, metric=metrics, vs=vs, device=device, known=known,
                          on_unreadable=record_warner(), correction=correction)  # fmt: skip
    tables, records, suites = built.tables, built.records, built.suites
    names = list(suites)
    images: list[Path] = []
    if plots is not None:
        from protobench.reporting.plots import make_plots

        try:
            for name in names:
                images += make_plots(records, name, suites[name], plots, results)
        except OSError as error:
            raise UserError(f"--plots {plots}: cannot write ({error.strerror}); give a folder you can write") from None
        typer.echo(f"wrote {len(images)} plot files to {plots}", err=out is None)
    pngs = [p for p in images if p.suffix == ".png"]
    text = render(tables, fmt, images=pngs) if fmt == "html" and pngs else render(tables, fmt)
    if out is None:
        typer.echo(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as error:
        raise UserError(f"--out {out}: cannot write ({error.strerror}); give a path you can write") from None
    typer.echo(f"wrote {out}")


def report_command(
    suites: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SUITE",
            help="Suites to report, by name or suite file (its records are under its 'name:'); default: all in the "
            "store.",
        ),
    ] = None,
    results: Annotated[Path, typer.Option(help="The results store to read.")] = Path("results"),
    fmt: Annotated[str, typer.Option("--format", help="md, csv, latex or html (one self-contained page).")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
    device: Annotated[
        str | None, typer.Option(help="Only records whose device contains this text, e.g. H100 or cpu.")
    ] = None,
    vs: Annotated[
        str | None,
        typer.Option("--vs", help="Mark each cell >, < or ~ (better, worse, no evidence) against this method."),
    ] = None,
    correction: Annotated[
        str | None,
        typer.Option(
            help="How --vs corrects the p-values of a table's cells together: holm (default), bh "
            "(Benjamini-Hochberg) or none.",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Tabulate these (repeat or comma-separate): final, val-selected, or any key of a record's "
            "metrics or diagnostics, e.g. train_accuracy, nc1, ece. Default: final and val-selected.",
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(help="Also write the suite's plots (PNG and SVG) to this folder; html inlines them."),
    ] = None,
) -> None:
    """Tables of finished results: rows = methods, columns = dims, cells = mean +- std over seeds (n)."""
    from protobench.reporting.table import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}")
    check_results_flag(results, must_exist=True)
    check_output_flags(out, plots)
    if correction is not None:
        from protobench.reporting.comparison import check_correction

        check_correction(correction)
        if vs is None:
            raise UserError(f"--correction {correction} sets how --vs marks are corrected; give --vs METHOD too")
    if vs is not None:
        from protobench.methods import METHODS

        if vs not in METHODS:
            raise UserError(f"--vs: {METHODS.unknown_message(vs)}")
    metrics = [name.strip() for text in metric or [] for name in text.split(",") if name.strip()]
    if metric and not metrics:
        raise UserError("--metric is empty; give metric names, e.g. --metric nc1 or --metric final,ece")
    print_report(list(suites or []), results, fmt, out, device=device, vs=vs, metrics=metrics or None, plots=plots,
                 correction=correction or "holm")  # fmt: skip
