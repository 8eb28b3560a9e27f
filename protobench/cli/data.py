"""`protobench data`: where each dataset is, checksums, ImageNet-200 preparation and per-class counts.

torch and the dataset modules are imported inside the commands so that `--help` stays instant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from protobench.errors import UserError

app = typer.Typer(help="Find, verify and prepare datasets; show per-class counts of a suite.", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder searched first (then $PROTOBENCH_DATA and the user data dir)."),
]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _locators() -> dict[str, tuple[Callable[[Any], Path | None], str]]:
    """Per dataset: a function finding it without reading or downloading, and how to get it."""
    from protobench.data import cifar, fashion_mnist, imagenet, stl10, svhn
    from protobench.data.base import search_dirs

    def find_fashion(request: Any) -> Path | None:
        for folder in search_dirs(request, fashion_mnist.SYSTEM_DIR):
            if files := fashion_mnist.find_idx_dir(folder):
                return files["train_images"].parent
        return None

    return {
        "fashion-mnist": (find_fashion, fashion_mnist.HOW_TO_GET),
        "cifar10": (lambda r: cifar.locate("cifar10", r), cifar.how_to_get("cifar10")),
        "cifar100": (lambda r: cifar.locate("cifar100", r), cifar.how_to_get("cifar100")),
        "svhn": (svhn.locate, svhn.HOW_TO_GET),
        "stl10": (stl10.locate, stl10.HOW_TO_GET),
        "imagenet": (imagenet.locate, imagenet.HOW_TO_GET),
        "imagenet-lt": (imagenet.locate, imagenet.HOW_TO_GET + " Split files come from the suite."),
        "imagenet200": (lambda r: imagenet.find_imagenet200(r, 64), imagenet.IMAGENET200_HOW),
    }


def _verifiers() -> dict[str, Callable[[str, Any], list[tuple[str, bool]]]]:
    from protobench.data import cifar, stl10, svhn

    return {"cifar10": cifar.verify, "cifar100": cifar.verify, "svhn": svhn.verify, "stl10": stl10.verify}


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show, for every dataset, where it was found or how to get it (downloads nothing)."""
    from rich.table import Table

    from protobench.data import DATASETS, DataRequest

    request = DataRequest(data_dir=data_dir, download=False)
    locators = _locators()
    table = Table(title="datasets")
    table.add_column("dataset")
    table.add_column("status")
    table.add_column("where / how to get it", overflow="fold")
    for name in DATASETS.names():
        if name in locators:
            locate, how = locators[name]
            where = locate(request)
            found, text = where is not None, str(where) if where is not None else how
        else:  # registered elsewhere without a locator: build it without downloading
            try:
                found, text = True, getattr(DATASETS.get(name)(request), "source", "") or "found"
            except UserError as error:
                found, text = False, str(error)
        table.add_row(name, "[green]found[/green]" if found else "[red]missing[/red]", text)
    _console().print(table)


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="cifar10, cifar100, svhn or stl10.")],
    data_dir: DataDir = None,
) -> None:
    """Check a dataset's files against the MD5 checksums torchvision publishes."""
    from rich.table import Table

    from protobench.data import DATASETS, DataRequest

    verifiers = _verifiers()
    if name not in verifiers:
        if name not in DATASETS:
            raise UserError(DATASETS.unknown_message(name))
        raise UserError(f"{name} has no published checksums; verify covers: {', '.join(verifiers)}")
    results = verifiers[name](name, DataRequest(data_dir=data_dir, download=False))
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
    from protobench.data import imagenet
    from protobench.paths import user_data_dir

    if name != "imagenet200":
        raise UserError(f"cannot prepare '{name}'; prepare knows: imagenet200")
    classes_file = classes or imagenet.DEFAULT_CLASSES_FILE
    if not classes_file.is_file():
        raise UserError(f"classes file {classes_file} not found; pass --classes FILE (200 wnids, one a line)")
    target = imagenet.prepare_imagenet200(
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
    """Per-class train/val/test counts of a suite after its long-tail subsampling and validation split."""
    from protobench.data import DataRequest
    from protobench.data.prepare import prepare_counts
    from protobench.suites import load_suite

    loaded = load_suite(suite)
    request = DataRequest(data_dir=data_dir, download=download)
    cells = []
    for ratio in list(loaded.imbalance_ratios) or [None]:
        counts = prepare_counts(loaded, request, ratio)
        cells.append({"ratio": ratio, **{s: list(counts.get(s, [])) for s in ("train", "val", "test")}})
    if as_json:
        typer.echo(json.dumps({"suite": loaded.name, "dataset": loaded.dataset, "cells": cells}, indent=2))
        return
    from rich.table import Table

    console = _console()
    for cell in cells:
        ratio = cell["ratio"]
        title = f"{loaded.name} ({loaded.dataset}" + (f", imbalance ratio {ratio:g})" if ratio else ")")
        console.print(f"[bold]{title}[/bold]")  # a heading, not a title: titles wrap to the table's width
        table = Table()
        for column in ("class", "train", "val", "test"):
            table.add_column(column, justify="right")
        k = max(len(cell["train"]), len(cell["val"]), len(cell["test"]))
        for c in range(k):
            row = [str(cell[s][c]) if c < len(cell[s]) else "-" for s in ("train", "val", "test")]
            table.add_row(str(c), *row)
        table.add_row("total", *(str(sum(cell[s])) for s in ("train", "val", "test")), style="bold")
        console.print(table)
