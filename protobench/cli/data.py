"""`protobench data`: where each dataset is, checksums, ImageNet-200 preparation and per-class counts.

torch and the dataset modules are imported inside the commands so that `--help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from protobench.core.errors import UserError, did_you_mean

app = typer.Typer(help="Find, verify and prepare datasets; show per-class counts of a suite.", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder searched first (then $PROTOBENCH_DATA and the user data dir)."),
]
#: What `protobench data prepare` can build.
PREPARABLE = ("imagenet200",)


def _console() -> Any:
    from rich.console import Console

    return Console()


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show, for every dataset, where it was found or how to get it (downloads nothing)."""
    from rich.table import Table

    from protobench.data import DATASETS, DataRequest

    request = DataRequest(data_dir=data_dir, download=False)
    table = Table(title="datasets")
    table.add_column("dataset")
    table.add_column("status")
    table.add_column("where / how to get it", overflow="fold")
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        where = spec.locate(request)
        text = str(where) if where is not None else spec.how_to_get
        table.add_row(name, "[green]found[/green]" if where is not None else "[red]missing[/red]", text)
    _console().print(table)


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="A dataset with published MD5s, e.g. cifar10.")],
    data_dir: DataDir = None,
) -> None:
    """Check a dataset's files against the MD5 checksums torchvision publishes."""
    from rich.table import Table

    from protobench.data import DATASETS, DataRequest

    spec = DATASETS.get(name)  # an unknown name: a UserError with the closest registered one
    if spec.verify is None:
        covered = [n for n in DATASETS.names() if DATASETS.get(n).verify is not None]
        raise UserError(f"{name} has no published checksums; verify covers: {', '.join(covered)}")
    results = spec.verify(DataRequest(data_dir=data_dir, download=False))
    table = Table(title=f"{name} checksums")
    table.add_column("file", overflow="fold")
    table.add_column("MD5")
    for file, ok in results:
        table.add_row(file, "[green]ok[/green]" if ok else "[red]MISMATCH[/red]")
    _console().print(table)
    bad = [Path(file).name for file, ok in results if not ok]
    if bad:
        raise UserError(
            f"{name}: {len(bad)} of {len(results)} files fail the published MD5 ({', '.join(bad)}); "
            "delete them and download again"
        )


@app.command()
def prepare(
    name: Annotated[str, typer.Argument(help="What to prepare: imagenet200.")],
    imagenet_dir: Annotated[
        Path, typer.Option("--imagenet", help="ImageNet-1K folder holding train/<wnid>/ and val/<wnid>/.")
    ],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the user data dir).")] = None,
    size: Annotated[int, typer.Option(help="Side of the square images.")] = 64,
    classes: Annotated[
        Path | None, typer.Option(help="wnids one a line (default: suites/imagenet200_classes.txt).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Decoding processes (default: min(8, CPUs)).")] = None,
) -> None:
    """Build the compact ImageNet-200 file (uint8, size x size) from an ImageNet-1K tree."""
    from protobench.core.paths import user_data_dir
    from protobench.data import imagenet200

    if name not in PREPARABLE:
        hint = did_you_mean(name, PREPARABLE)
        raise UserError(f"cannot prepare '{name}'{hint}; prepare knows: {', '.join(PREPARABLE)}")
    classes_file = classes or imagenet200.DEFAULT_CLASSES_FILE
    if not classes_file.is_file():
        raise UserError(f"classes file {classes_file} not found; pass --classes FILE (200 wnids, one a line)")
    target = imagenet200.prepare_imagenet200(
        imagenet_dir, out or user_data_dir(), classes_file, size=size, workers=workers
    )
    _console().print(f"wrote {target}")


@app.command()
def stats(
    suite: Annotated[str, typer.Argument(help="Suite name or YAML path.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    download: Annotated[bool, typer.Option(help="Allow downloading missing data.")] = False,
) -> None:
    """Per-class train/val/test counts of a suite after its long-tail subsampling and validation split,
    each class by its name where the dataset names its classes."""
    from protobench.data.prepare import prepare_cell_data
    from protobench.suite.definition import load_suite

    loaded = load_suite(suite)
    cells = []
    names: list[str] | None = None
    for ratio in list(loaded.imbalance_ratios) or [None]:
        data = prepare_cell_data(loaded.data_settings, data_dir, ratio, download)
        names = data.class_names
        cells.append({"ratio": ratio, **{s: list(data.counts.get(s, [])) for s in ("train", "val", "test")}})
    if as_json:
        found = {"suite": loaded.name, "dataset": loaded.dataset, "class_names": names, "cells": cells}
        typer.echo(json.dumps(found, indent=2))
        return
    from rich.table import Table

    console = _console()
    for cell in cells:
        ratio = cell["ratio"]
        title = f"{loaded.name} ({loaded.dataset}" + (f", imbalance ratio {ratio:g})" if ratio else ")")
        console.print(f"[bold]{title}[/bold]")  # a heading, not a title: titles wrap to the table's width
        table = Table()
        table.add_column("class", justify="right")
        if names:
            table.add_column("name")
        for column in ("train", "val", "test"):
            table.add_column(column, justify="right")
        k = max(len(cell["train"]), len(cell["val"]), len(cell["test"]))
        for c in range(k):
            row = [str(cell[s][c]) if c < len(cell[s]) else "-" for s in ("train", "val", "test")]
            table.add_row(str(c), *([names[c] if c < len(names) else "-"] if names else []), *row)
        totals = [str(sum(cell[s])) for s in ("train", "val", "test")]
        table.add_row("total", *([""] if names else []), *totals, style="bold")
        console.print(table)
