"""What the commands share: the page console and the checks of their flags (one ``UserError`` line each)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from protobench.core.errors import UserError


def page_console() -> Any:
    """A rich console for tables; off a terminal (pipes, CI logs) 200 columns instead of rich's 80."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


#: What each list flag's error suggests instead.
LIST_EXAMPLES = {"--methods": "dl2pa,softmax", "--dims": "2,3,16", "--seeds": "0,1,2", "--lr": "0.01,0.1"}


def parse_list(text: str | None, kind: type, flag: str) -> list | None:
    """``"2,3,16"`` -> [2, 3, 16]; an empty list or a bad item is a UserError naming the flag."""
    if text is None:
        return None
    example = f"e.g. {flag} {LIST_EXAMPLES.get(flag, '2,3' if kind is int else '0.001,0.01')}"
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag} is empty; give a comma-separated list, {example}")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise UserError(f"{flag} '{text}' is not a comma-separated list of {kind.__name__}s; {example}") from None


def with_grid_flags(suite: Any, methods: str | None, dims: str | None, seeds: str | None, epochs: int | None) -> Any:
    """``suite`` with the --methods/--dims/--seeds/--epochs flags that were given applied (and validated)."""
    return suite.with_overrides(
        methods=parse_list(methods, str, "--methods"),
        dims=parse_list(dims, int, "--dims"),
        seeds=parse_list(seeds, int, "--seeds"),
        epochs=epochs,
    )


def check_run_flags(jobs: int, data_dir: Path | None, results: Path | None = None) -> None:
    """The flags every training command shares: --jobs >= 1, --data-dir an existing folder, and
    --results a folder or a path where one can be made (checked before any cell trains)."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: use 1 or more (cells trained at once), e.g. --jobs 2")
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder; create it or point it at your datasets")
    if results is not None:
        check_results_flag(results, must_exist=False)


def check_pack_flag(pack: int, world_size: int, logs: int) -> None:
    """--pack: 1 or more cells trained together; one process per cell under torchrun, and --log's curves
    follow one cell at a time (docs/engine.md, "Packed cells")."""
    if pack < 1:
        raise UserError(f"--pack {pack}: use 1 or more (cells trained together in one process), e.g. --pack 4")
    if pack > 1 and world_size > 1:
        raise UserError(f"--pack {pack} under torchrun: each cell already uses every rank; drop --pack")
    if pack > 1 and logs:
        raise UserError(f"--pack {pack} with --log: live curves follow one cell at a time; drop one of them")


def check_results_flag(results: Path, must_exist: bool) -> None:
    """--results must be a folder: one that exists when reading (report, compare), or one that exists
    or can be created when training (run, tune)."""
    if results.is_dir():
        return
    if results.exists():
        raise UserError(f"--results {results} is a file, not a folder; point --results at a results folder")
    if must_exist:
        raise UserError(f"--results {results} does not exist; run a suite first or point at a results folder")
    check_parents("--results", results)


def check_parents(flag: str, path: Path) -> None:
    """A UserError when the nearest existing folder above ``path`` is a file, so it cannot be made."""
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{flag} {path}: {above} is a file, not a folder; give a path inside a folder")


def check_output_flags(out: Path | None, plots: Path | None) -> None:
    """report's --out (a file) and --plots (a folder), refused before anything is built."""
    if out is not None:
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; give a file name, e.g. --out {out / 'report.md'}")
        check_parents("--out", out)
    if plots is not None:
        if plots.exists() and not plots.is_dir():
            raise UserError(f"--plots {plots} is a file; give a folder (it is created if missing)")
        check_parents("--plots", plots)


def record_warner() -> Callable[[Path, str], None]:
    """An ``on_unreadable`` for ``iter_records``: one warning line on stderr per unreadable record file."""
    seen: set[Path] = set()

    def warn(path: Path, why: str) -> None:
        if path not in seen:
            seen.add(path)
            typer.echo(f"warning: ignored unreadable record {path} ({why}); delete it or rerun the cell", err=True)

    return warn
