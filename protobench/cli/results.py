"""`protobench results`: what is wrong in a results store, and removing stale records (protobench/store/audit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protobench.core.errors import UserError

app = typer.Typer(
    help="Check a results store (stale, failed, dirty, unknown-code, mixed-host, unreadable records; --deep: "
    "prototype sets), prune stale ones, export it.",
    no_args_is_help=True,
)

Suites = Annotated[list[str] | None, typer.Argument(help="Suites to look at (default: every suite in the store).")]
Store = Annotated[Path, typer.Option(help="The results store.")]


def _existing(results: Path, suites: list[str] | None) -> list[str] | None:
    """The suites asked for, each of which must have a folder in the store (one-line error otherwise)."""
    from protobench.api import store_suites

    return store_suites(results, suites)[1]


@app.command()
def check(
    suites: Suites = None,
    results: Store = Path("results"),
    deep: Annotated[
        bool,
        typer.Option("--deep", help="Also rebuild each record's prototype set at HEAD and list those that differ."),
    ] = False,
) -> None:
    """List stale, failed, dirty, unknown-code, mislabelled, mixed-host and unreadable records with their paths
    (--deep: and those whose prototype set differs from HEAD's); exit 1 if any is stale or (--deep) differs."""
    from protobench.store.audit import KINDS, check

    chosen = _existing(results, suites)
    notes: list[str] = []
    findings = check(results, chosen, notes)
    if deep:
        from protobench.store.prototype_audit import deep_check

        report = deep_check(results, chosen, on_progress=lambda line: typer.echo(line, err=True))
        findings += report.findings
        notes += report.notes()
    for finding in findings:
        typer.echo(f"{finding.kind:<11} {finding.path}: {finding.detail}")
    for note in notes:
        typer.echo(note)
    counts = {kind: sum(f.kind == kind for f in findings) for kind in KINDS if deep or kind != "prototypes"}
    typer.echo(", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" (under {results})")
    if counts["stale"]:
        typer.echo(f"stale records are retrained by `protobench run`; remove them with "
                   f"`protobench results prune --stale --results {results}`", err=True)  # fmt: skip
    if counts["stale"] or counts.get("prototypes"):
        raise typer.Exit(1)


@app.command()
def prune(
    suites: Suites = None,
    results: Store = Path("results"),
    stale: Annotated[bool, typer.Option("--stale", help="Remove the records made by older code (required).")] = False,
) -> None:
    """Remove stale records (with their embedding samples and kept checkpoints) and say which."""
    from protobench.store.audit import prune_stale

    if not stale:
        raise UserError("results prune removes stale records only: say so with --stale")
    removed = prune_stale(results, _existing(results, suites))
    for path in removed:
        typer.echo(f"removed {path}")
    typer.echo(f"{len(removed)} stale record(s) removed from {results}")


@app.command()
def export(
    suites: Suites = None,
    results: Store = Path("results"),
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet (needs pyarrow) or jsonl.")] = "csv",
    out: Annotated[Path, typer.Option(help="The file to write ('-': standard output, csv and jsonl).")] = Path("-"),
    long: Annotated[
        bool, typer.Option("--long", help="Per-class accuracy as a long table: one row per record and class.")
    ] = False,
    history: Annotated[bool, typer.Option("--history", help="One row per record and epoch (the history).")] = False,
    columns: Annotated[
        str | None, typer.Option(help="Only these columns, comma-separated, in this order (docs/export.md).")
    ] = None,
) -> None:
    """Every record as one tidy table: one row per record (failed, stale and unreadable ones marked, never dropped)."""
    from protobench.api import export as export_table

    if long and history:
        raise UserError("--long and --history are two different tables; give one of them")
    table = "classes" if long else "history" if history else "records"
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
    if columns is not None and not wanted:
        raise UserError("--columns is empty; give column names, e.g. --columns suite,method,dim,seed,test_accuracy")
    frame = export_table(results, out, fmt, suites, table=table, columns=wanted)
    if str(out) != "-":
        typer.echo(f"wrote {len(frame)} rows x {len(frame.columns)} columns ({table}) to {out}")
