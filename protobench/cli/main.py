"""``protobench``: list suites, run them, report results, work with prototypes and data.

Heavy modules (torch) are imported inside the commands so ``--help`` answers at once.
"""

from __future__ import annotations

import io
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from protobench.cli.flags import (
    check_pack_flag,
    check_run_flags,
    page_console,
    with_grid_flags,
)
from protobench.cli.next_steps import QUICKSTART, next_steps
from protobench.core.errors import UserError
from protobench.core.version import __version__

app = typer.Typer(
    help="Benchmark hyperspherical prototype classifiers: DL2PA against PSC, ETF, HPN, EBV and DNC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"protobench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """protobench: run suites of (method x dim x seed) cells on one engine and compare them with the paper."""


@app.command("methods")
def methods_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the methods as JSON for scripts.")] = False,
) -> None:
    """List every method with its hyperparameters and their defaults (override them in a suite's method_options)."""
    from protobench.methods import METHODS

    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append({"name": name, "defaults": {**cls.defaults, **cls.later_defaults}, "summary": summary})
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title="protobench methods (defaults; a suite's method_options override them)")
    for column in ("method", "hyperparameters", "what"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ", ".join(f"{k}={v}" for k, v in r["defaults"].items()) or "-", r["summary"])
    page_console().print(table)


@app.command("run")
def run_command(
    suite: Annotated[str, typer.Argument(help="A suite name (see `protobench suites`) or a path to a suite YAML.")],
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods to run instead of the suite's.")] = None,
    dims: Annotated[str | None, typer.Option(help="Comma-separated embedding dims, e.g. 2,8 (2..4096).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the suite's epochs (quick runs); >= 1.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the cells and each method's resolved recipe, then exit (nothing trains)."
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda or cuda:N.")] = "auto",
    results: Annotated[Path, typer.Option(help="Results store; finished cells there are skipped.")] = Path("results"),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where datasets are looked for first (then $PROTOBENCH_DATA, the cache)."),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Ask torch for deterministic kernels (slower on GPU).")
    ] = False,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            "--save-checkpoints",
            help="Keep each cell's final checkpoint (model, head, optimiser, RNG states) beside its record as .pt.",
        ),
    ] = False,
    checkpoint_minutes: Annotated[
        float,
        typer.Option(help="Inside an epoch, checkpoint every this many minutes (every epoch's end is checkpointed)."),
    ] = 10.0,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard unfinished cells' checkpoints and train them from epoch 0.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(help="Wait for cells another protobench process is training (--no-wait: skip them)."),
    ] = True,
    reuse: Annotated[
        bool,
        typer.Option(
            help="Copy a finished record of the same config and numerics from elsewhere in the store instead of "
            "training (--no-reuse: train every cell here)."
        ),
    ] = True,
    keep_stale: Annotated[
        bool,
        typer.Option(
            "--keep-stale",
            help="Count records made by older code (other numerics versions) as finished instead of retraining.",
        ),
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(help="Cells run at once in worker processes sharing the device (small models, big GPU)."),
    ] = 1,
    pack: Annotated[
        int,
        typer.Option(
            help="Cells trained together in one process, taking turns step by step, each its own "
            "numbers (docs/engine.md, 'Packed cells'); with --jobs, per worker."
        ),
    ] = 1,
    cuda_graphs: Annotated[
        bool,
        typer.Option(help="On CUDA, replay each training step from a CUDA graph (fewer kernel launches)."),
    ] = True,
    shard: Annotated[
        str | None,
        typer.Option(help="Run only shard I of N of the grid, e.g. 0/4 (job arrays; the same split in every job)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch threads, split between --jobs workers [default: the CPUs this process may use: affinity, "
            "cgroup quota, SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, the smallest]."
        ),
    ] = None,
    log: Annotated[
        list[str] | None,
        typer.Option(
            help="Live per-epoch curves: tensorboard[:DIR] (default DIR: <results>/tensorboard) or wandb[:PROJECT]; "
            "repeat for both (docs/live-curves.md)."
        ),
    ] = None,
) -> None:
    """Run a suite's grid (method x dim x seed), skipping finished cells, then print its table."""
    from protobench.cli.live_display import PlainReporter, make_reporter
    from protobench.core.device import resolve_device, usable_cpus
    from protobench.engine.distributed import environment_world_size, joined
    from protobench.running.loggers import parse_logs
    from protobench.running.runner import RunOptions, run_suite
    from protobench.running.sharding import Shard
    from protobench.suite.definition import load_suite

    loaded = with_grid_flags(load_suite(suite), methods, dims, seeds, epochs)
    check_run_flags(jobs, data_dir, results)
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads}: use 1 or more, or leave it out to use the CPUs this process may use")
    if not checkpoint_minutes > 0:
        raise UserError(f"--checkpoint-minutes {checkpoint_minutes:g}: use a positive number of minutes, e.g. 10")
    parts = Shard.parse(shard) if shard is not None else None
    logs = parse_logs(log or [], results)  # a missing package is refused here, before any cell trains
    if dry_run:  # what this run would train, counted as it plans (device, store, shard): docs/cli.md
        from protobench.cli.suites import print_dry_run

        print_dry_run(loaded, results, device=resolve_device(device), deterministic=deterministic, shard=parts,
                      keep_stale=keep_stale)  # fmt: skip
        return
    if environment_world_size() > 1 and jobs > 1:
        raise UserError(f"--jobs {jobs} under torchrun: each cell already uses every rank; drop --jobs")
    check_pack_flag(pack, environment_world_size(), len(logs))
    with joined(resolve_device(device)) as (collective, run_device):  # torchrun: the ranks, for this run only
        options = RunOptions(
            data_dir=data_dir, device=run_device, deterministic=deterministic, keep_checkpoints=keep_checkpoints,
            cuda_graphs=cuda_graphs, checkpoint_minutes=checkpoint_minutes, restart=restart, wait=wait,
            shard=parts, collective=collective, reuse=reuse, keep_stale=keep_stale,
            threads=threads or usable_cpus(), log=logs, pack=pack,
        )  # fmt: skip
        reporter = make_reporter() if jobs == 1 else PlainReporter()
        if not collective.is_main:
            reporter = PlainReporter(stream=io.StringIO())  # rank 0 reports for all
        for spec in logs:
            reporter.note(spec.describe())
        summary = run_suite(loaded, results_dir=results, options=options, reporter=reporter, jobs=jobs)
    if not collective.is_main:
        return  # rank 0 reports
    if summary.interrupted or summary.worker_lost:
        import shlex

        resume = shlex.join(["protobench", *(a for a in sys.argv[1:] if a != "--restart")])
        if summary.interrupted:
            name = signal.Signals(summary.interrupted).name
            said = f"stopped by {name}: finished cells are saved, unfinished ones checkpointed"
        else:
            said = "error: a worker process died (killed, or out of memory?); finished cells are saved"
        typer.echo(f"{said}; resume with:", err=True)
        typer.echo(f"  {resume}", err=True)
        raise typer.Exit(128 + summary.interrupted if summary.interrupted else 1)
    if parts is not None and not summary.total:
        return  # a shard with no cells said so (an array of more tasks than cells): no table, exit 0
    from protobench.cli.report import print_report

    print_report([loaded.name], results, "md", None, {loaded.name: loaded})
    if summary.failed:
        raise typer.Exit(1)
    if loaded.name == QUICKSTART:  # what to try next, on screen or in a log alike (plain text)
        typer.echo(next_steps(loaded.name, loaded.methods, len(loaded.seeds), results, sys.argv[1:]))


def mount_subcommands() -> None:
    """Attach the command groups and the commands that live in their own modules, once per process
    (``main`` may run many times in one process, as the tests run it: mounting again would register
    every group again, and each call would then build a larger command tree than the last)."""
    if getattr(app, "protobench_mounted", False):
        return
    app.protobench_mounted = True  # type: ignore[attr-defined]
    from protobench.cli.bench import app as bench_app
    from protobench.cli.compare import compare_command
    from protobench.cli.data import app as data_app
    from protobench.cli.prototypes import app as prototypes_app
    from protobench.cli.report import report_command
    from protobench.cli.results import app as results_app
    from protobench.cli.suites import app as suites_app
    from protobench.cli.tune import tune_command

    app.command("tune")(tune_command)
    app.command("compare")(compare_command)
    app.command("report")(report_command)

    app.add_typer(prototypes_app, name="prototypes", help="Generate, measure and plot prototype sets.")
    app.add_typer(data_app, name="data", help="Where datasets are, their checksums and per-class counts.")
    app.add_typer(bench_app, name="bench")
    app.add_typer(results_app, name="results")
    app.add_typer(suites_app, name="suites")


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` as one ``error:`` line on stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def main() -> None:
    """Console entry point. Bad input is one ``error:`` line on stderr and exit code 2, never a
    traceback: a UserError raised by a command, or an option or argument that click cannot parse."""
    # click's error base as this typer has it (recent typer versions carry their own copy of click)
    click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        mount_subcommands()
        code = app(prog_name="protobench", standalone_mode=False)  # click's errors come back here, unprinted
    except UserError as error:
        fail(str(error))
    except (typer.Abort, KeyboardInterrupt):  # click turns Ctrl-C outside a run into Abort
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except click_error as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # a bare command group: its help is printed already
        ctx = getattr(error, "ctx", None)
        hint = f"; see {ctx.command_path} --help" if ctx is not None else ""
        fail(error.format_message().strip().rstrip(".") + hint, getattr(error, "exit_code", 2))
    if isinstance(code, int) and code:  # typer.Exit(N) is returned, not raised, outside standalone mode
        sys.exit(code)
