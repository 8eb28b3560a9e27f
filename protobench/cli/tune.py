"""``protobench tune SUITE``: short runs over an lr (x weight decay) grid, chosen on validation, written as a suite."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from protobench.core.errors import UserError

if TYPE_CHECKING:
    from protobench.running.tuning import TuneResult
    from protobench.suite.definition import Suite


def tune_command(
    suite: Annotated[str, typer.Argument(help="A suite with a validation split (val_size > 0), by name or path.")],
    lr: Annotated[
        str | None, typer.Option("--lr", help="Comma-separated learning rates, e.g. 0.003,0.01,0.03,0.1.")
    ] = None,
    weight_decay: Annotated[
        str | None, typer.Option("--weight-decay", help="Comma-separated weight decays (grid with --lr).")
    ] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods to tune (default: the suite's).")] = None,
    dims: Annotated[str | None, typer.Option(help="Dims to tune at, e.g. 3,16 (default: the suite's).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds of each grid point (default: the suite's).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of each tuning run (default: the suite's).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write a suite that includes SUITE with the chosen recipes.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda or cuda:N.")] = "auto",
    results: Annotated[Path, typer.Option(help="Results store; tuning cells go under SUITE-tune.")] = Path("results"),
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets are looked for first.")] = None,
    jobs: Annotated[int, typer.Option(help="Cells run at once in worker processes sharing the device.")] = 1,
    pack: Annotated[
        int, typer.Option(help="Cells trained together in one process, each its own numbers (as run's --pack).")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials and choices as JSON for scripts.")] = False,
) -> None:
    """Choose each method's lr (and weight decay) on the validation split, never on test."""
    from protobench.cli.flags import check_pack_flag, check_run_flags, parse_list, with_grid_flags
    from protobench.cli.live_display import PlainReporter, make_reporter
    from protobench.core.device import resolve_device, usable_cpus
    from protobench.running.runner import RunOptions
    from protobench.running.tuning import check_tunable, grid_points, tune, tuned_suite_yaml
    from protobench.suite.definition import load_suite

    base = load_suite(suite)
    check_tunable(base)  # before any flag is looked at: the one refusal that matters most
    grid = grid_points(parse_list(lr, float, "--lr"), parse_list(weight_decay, float, "--weight-decay"))
    tuned = with_grid_flags(base, methods, dims, seeds, epochs)
    check_run_flags(jobs, data_dir, results)
    check_pack_flag(pack, 1, 0)
    if out is not None:
        check_out(out, base)
    # torch threads follow the allocation, as run's do without --threads (docs/slurm/README.md, "Threads")
    options = RunOptions(data_dir=data_dir, device=resolve_device(device), threads=usable_cpus(), pack=pack)
    if as_json:  # progress (the workers' too) goes to stderr; stdout holds only the JSON
        with stdout_to_stderr():
            result = tune(tuned, grid, results_dir=results, options=options, reporter=PlainReporter(), jobs=jobs)
    else:
        reporter = make_reporter() if jobs == 1 else PlainReporter()
        result = tune(tuned, grid, results_dir=results, options=options, reporter=reporter, jobs=jobs)
    command = "protobench " + shlex.join(["tune", *sys.argv[2:]]) if len(sys.argv) > 1 else "protobench tune"
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(tuned_suite_yaml(result, out, command))
        except OSError as error:
            raise UserError(f"--out {out}: cannot write ({error.strerror})") from None
    if as_json:
        typer.echo(json.dumps({**result.as_dict(), "out": str(out) if out else None}, indent=1))
    else:
        print_trials(result)
        if out is not None:
            typer.echo(next_step(out))
    if edges := result.at_grid_edge():  # on stderr in both modes: a choice at an edge may not be the best
        listed = "; ".join(f"{m} {where}" for m, where in edges.items())
        typer.echo(f"warning: at the grid's edge, so the best may lie beyond it (extend the grid): {listed}", err=True)
    if result.summary.failed:
        raise typer.Exit(1)


def next_step(out: Path) -> str:
    """What ``protobench run OUT`` will train, read back from the suite just written."""
    from protobench.suite.definition import load_suite

    written = load_suite(str(out))
    cells = f"d = {','.join(map(str, written.dims))}, seeds {','.join(map(str, written.seeds))}"
    tuned = ", ".join(f"{m} (lr {written.recipe_for(m).lr:g})" for m in written.methods)
    return (f"wrote {out}: `protobench run {out}` trains {tuned} at {cells}, "
            f"{written.train.epochs} epoch(s), each method with the recipe chosen here")  # fmt: skip


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 (and sys.stdout) at stderr for a while; worker processes inherit it."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def check_out(out: Path, base: Suite) -> None:
    """``--out`` must be a new .yaml suite that does not replace the one it includes or share its name."""
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out {out}: give a .yaml file name, e.g. --out {base.name}-tuned.yaml")
    if base.path and out.resolve() == Path(base.path).resolve():
        raise UserError(f"--out {out} is the suite being tuned; give a new file, e.g. {base.name}-tuned.yaml")
    if out.stem in (base.name, f"{base.name}-tune"):
        raise UserError(
            f"--out {out}: its name '{out.stem}' is taken by the suite's records; e.g. {base.name}-tuned.yaml"
        )


def print_trials(result: TuneResult) -> None:
    """Method x grid point -> validation mean +- std (n); the chosen point marked with '*'."""
    from rich.table import Table

    from protobench.cli.flags import page_console

    base = result.suite
    typer.echo(
        f"{base.name}: final-epoch validation accuracy (%), mean +- std (n) over dims "
        f"{','.join(map(str, base.dims))} x seeds {','.join(map(str, base.seeds))}, "
        f"{base.train.epochs} epoch(s) a run; "
        "* = chosen (highest validation mean; ties: first in grid order). Test accuracy is not read."
    )
    table = Table()
    table.add_column("method")
    for point in result.grid:
        table.add_column(point.label(), justify="right")
    for method, trials in result.trials.items():
        row = [method]
        for t in trials:
            if t.mean is None:
                text = "n/a" if t.not_applicable and not (t.failed or t.missing) else "error"
            else:
                text = f"{t.mean:.2f} +- {t.std:.2f} ({len(t.values)})"
                if not t.eligible:
                    text += f" [{t.failed + t.missing} failed]"
            if result.chosen[method] == t.point:
                text += " *"
            row.append(text)
        table.add_row(*row)
    page_console().print(table)
    untuned = [m for m, p in result.chosen.items() if p is None]
    if untuned:
        typer.echo(f"no eligible grid point for {', '.join(untuned)}: kept on the suite's recipe")
