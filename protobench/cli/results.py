"""`protobench results`: what is wrong in a results store, and removing stale records (protobench/audit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protobench.errors import UserError

app = typer.Typer(
    help="Check a results store (stale, failed, dirty, mixed-host, unreadable records); prune stale ones.",
    no_args_is_help=True,
)

Suites = Annotated[list[str] | None, typer.Argument(help="Suites to look at (default: every suite in the store).")]
Store = Annotated[Path, typer.Option(help="The results store.")]


def _existing(results: Path, suites: list[str] | None) -> list[str] | None:
    """The suites asked for, each of which must have a folder in the store (one-line error otherwise)."""
    if not results.is_dir():
        raise UserError(f"--results {results}: no such folder; give the results store, e.g. --results results")
    for name in suites or []:
        if not (results / name).is_dir():
            known = ", ".join(sorted(p.name for p in results.iterdir() if p.is_dir())) or "none"
            raise UserError(f"suite '{name}' has no records under {results}; suites there: {known}")
    return suites or None


@app.command()
def check(suites: Suites = None, results: Store = Path("results")) -> None:
    """List stale, failed, dirty, mixed-host and unreadable records with their paths; exit 1 if any is stale."""
    from protobench.audit import KINDS, check

    findings = check(results, _existing(results, suites))
    for finding in findings:
        typer.echo(f"{finding.kind:<11} {finding.path}: {finding.detail}")
    counts = {kind: sum(f.kind == kind for f in findings) for kind in KINDS}
    typer.echo(", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" (under {results})")
    if counts["stale"]:
        typer.echo(f"stale records are retrained by `protobench run`; remove them with "
                   f"`protobench results prune --stale --results {results}`", err=True)  # fmt: skip
        raise typer.Exit(1)


@app.command()
def prune(
    suites: Suites = None,
    results: Store = Path("results"),
    stale: Annotated[bool, typer.Option("--stale", help="Remove the records made by older code (required).")] = False,
) -> None:
    """Remove stale records (with their embedding samples and kept checkpoints) and say which."""
    from protobench.audit import prune_stale

    if not stale:
        raise UserError("results prune removes stale records only: say so with --stale")
    removed = prune_stale(results, _existing(results, suites))
    for path in removed:
        typer.echo(f"removed {path}")
    typer.echo(f"{len(removed)} stale record(s) removed from {results}")
