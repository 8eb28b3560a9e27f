"""``protobench``: list suites, run them, report results, work with prototypes and data.

Heavy modules (torch) are imported inside the commands so ``--help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from protobench import __version__
from protobench.errors import UserError

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


def page_console() -> Any:
    """A rich console for tables; off a terminal (pipes, CI logs) 200 columns instead of rich's 80."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def parse_list(text: str | None, kind: type, flag: str) -> list | None:
    """``"2,3,16"`` -> [2, 3, 16]; a bad item is a UserError naming the flag."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag} is empty; give a comma-separated list, e.g. {flag} 2,3")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise UserError(f"{flag} '{text}' is not a comma-separated list of {kind.__name__}s") from None


def with_grid_flags(suite: Any, methods: str | None, dims: str | None, seeds: str | None, epochs: int | None) -> Any:
    """``suite`` with the --methods/--dims/--seeds/--epochs flags that were given applied (and validated)."""
    return suite.with_overrides(
        methods=parse_list(methods, str, "--methods"),
        dims=parse_list(dims, int, "--dims"),
        seeds=parse_list(seeds, int, "--seeds"),
        epochs=epochs,
    )


def check_run_flags(jobs: int, data_dir: Path | None) -> None:
    """The flags every training command shares: --jobs >= 1, --data-dir an existing folder."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: use 1 or more")
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder; create it or point it at your datasets")


@app.command("suites")
def suites_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the suites as JSON for scripts.")] = False,
) -> None:
    """List every suite: dataset, balance, classes, dims, methods, backbone, epochs, seeds."""
    from protobench.data import DATASETS
    from protobench.suites import available_suites, load_suite

    rows = []
    for name in available_suites():
        suite = load_suite(name)
        spec = DATASETS.get(suite.dataset)
        ratios = [r for r in suite.imbalance_ratios if r is not None]
        if ratios:  # the suite subsamples a balanced training set
            balance = "long-tailed " + "/".join(f"{r:g}" for r in ratios)
        else:  # or the dataset's own splits are long-tailed (ImageNet-LT)
            balance = "long-tailed (dataset)" if spec.long_tailed else "balanced"
        rows.append(
            {
                "name": suite.name,
                "dataset": suite.dataset,
                "balance": balance,
                "classes": spec.num_classes,
                "dims": list(suite.dims),
                "methods": list(suite.methods),
                "backbone": suite.backbone,
                "epochs": suite.train.epochs,
                "seeds": list(suite.seeds),
                "description": suite.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title="protobench suites")
    for column in (
        "suite",
        "dataset",
        "balanced / LT (ratio)",
        "classes",
        "dims",
        "methods",
        "backbone",
        "epochs",
        "seeds",
    ):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"], r["dataset"], r["balance"], str(r["classes"] or "?"),
            ",".join(map(str, r["dims"])), ", ".join(r["methods"]), r["backbone"],
            str(r["epochs"]), ",".join(map(str, r["seeds"])),
        )  # fmt: skip
    page_console().print(table)


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
        rows.append({"name": name, "defaults": dict(cls.defaults), "summary": summary})
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
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda or cuda:N.")] = "auto",
    results: Annotated[Path, typer.Option(help="Results store; finished cells there are skipped.")] = Path("results"),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where datasets are looked for first (then $PROTOBENCH_DATA, the cache)."),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Ask torch for deterministic kernels (slower on GPU).")
    ] = False,
    save_checkpoints: Annotated[
        bool,
        typer.Option(
            "--save-checkpoints", help="Save each cell's final model and method state (.pt) beside its record."
        ),
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(help="Cells run at once in worker processes sharing the device (small models, big GPU)."),
    ] = 1,
    cuda_graphs: Annotated[
        bool,
        typer.Option(help="On CUDA, replay each training step from a CUDA graph (fewer kernel launches)."),
    ] = True,
) -> None:
    """Run a suite's grid (method x dim x seed), skipping finished cells, then print its table."""
    from protobench.cli.progress import PlainReporter, make_reporter
    from protobench.device import resolve_device
    from protobench.runner import RunOptions, run_suite
    from protobench.suites import load_suite

    loaded = with_grid_flags(load_suite(suite), methods, dims, seeds, epochs)
    check_run_flags(jobs, data_dir)
    options = RunOptions(data_dir, resolve_device(device), deterministic, save_checkpoints, cuda_graphs)
    reporter = make_reporter() if jobs == 1 else PlainReporter()
    summary = run_suite(loaded, results_dir=results, options=options, reporter=reporter, jobs=jobs)
    print_report([loaded.name], results, "md", None, {loaded.name: loaded})
    if summary.failed:
        raise typer.Exit(1)


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
) -> None:
    """Build the tables of ``names`` from ``results`` (optionally only one device's, of the ``metrics``
    named as ``--metric`` takes them, and marked against method ``vs``) and print or write them;
    with ``plots``, write every plot of each suite there too (inlined in an html page)."""
    from protobench.report import build_tables, render, resolve_metrics
    from protobench.results import iter_records
    from protobench.suites import available_suites, load_suite

    records = list(iter_records(results, names or None))
    keys = None
    if metrics and records:  # names known anywhere in the store, so an older suite's gap is not "unknown"
        keys = resolve_metrics(metrics, list(iter_records(results)) if names else records)
    if device:
        records = [r for r in records if device.lower() in str(r.get("device", "")).lower()]
    if not names:
        names = sorted({r["suite"] for r in records})
    suites = {}
    for name in names:
        if known and name in known:
            suites[name] = known[name]
        else:
            suites[name] = load_suite(name) if name in available_suites() else None
    tables = build_tables(records, suites, vs, keys)
    if not tables:
        where = f"for {', '.join(names) or 'any suite'} under {results}"
        if keys:
            raise UserError(
                f"no finished results with {', '.join(keys)} {where} (records made before a metric was recorded, "
                "or where it is undefined, have none); try another --metric"
            )
        raise UserError(f"no finished results {where}; run a suite first")
    images: list[Path] = []
    if plots is not None:
        from protobench.plots import make_plots

        try:
            for name in names:
                images += make_plots(records, name, suites[name], plots, results)
        except OSError as error:
            raise UserError(f"--plots {plots}: cannot write ({error.strerror})") from None
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
        raise UserError(f"--out {out}: cannot write ({error.strerror})") from None
    typer.echo(f"wrote {out}")


@app.command("report")
def report_command(
    suites: Annotated[list[str] | None, typer.Argument(help="Suites to report (default: all in the store).")] = None,
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
    from protobench.report import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}")
    if not results.is_dir():
        raise UserError(f"--results {results} does not exist; run a suite first or point at a results folder")
    if vs is not None:
        from protobench.methods import METHODS

        if vs not in METHODS:
            raise UserError(f"--vs: {METHODS.unknown_message(vs)}")
    metrics = [name.strip() for text in metric or [] for name in text.split(",") if name.strip()]
    if metric and not metrics:
        raise UserError("--metric is empty; give metric names, e.g. --metric nc1 or --metric final,ece")
    print_report(list(suites or []), results, fmt, out, device=device, vs=vs, metrics=metrics or None, plots=plots)


def mount_subcommands() -> None:
    """Attach the prototypes and data command groups."""
    from protobench.cli.compare import compare_command
    from protobench.cli.data import app as data_app
    from protobench.cli.prototypes import app as prototypes_app
    from protobench.cli.tune import tune_command

    app.command("tune")(tune_command)
    app.command("compare")(compare_command)

    app.add_typer(prototypes_app, name="prototypes", help="Generate, measure and plot prototype sets.")
    app.add_typer(data_app, name="data", help="Where datasets are, their checksums and per-class counts.")


def main() -> None:
    """Console entry point: UserError becomes one line on stderr and exit code 2."""
    try:
        mount_subcommands()
        app()
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
