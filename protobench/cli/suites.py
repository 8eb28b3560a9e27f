"""`protobench suites`: list the suites, and `suites show SUITE` (and `run --dry-run`): a suite's cells and
each method's resolved recipe, before anything trains.

Every recipe shown is read from ``grid.cell_spec`` (through ``grid.row_specs``), the spec the engine
trains a cell with, so what is printed cannot differ from what trains (docs/recipes.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from protobench.cli.flags import check_results_flag, page_console, with_grid_flags
from protobench.core.errors import UserError

if TYPE_CHECKING:
    import torch

    from protobench.running.grid import Cell, GridPlan
    from protobench.running.sharding import Shard
    from protobench.suite.definition import Suite
    from protobench.suite.spec import CellSpec

app = typer.Typer(
    help="List every suite; `suites show SUITE` prints a suite's cells and each method's resolved recipe.",
    invoke_without_command=True,
    no_args_is_help=False,
)

#: The training keys that have a column of their own; every other key is shown (under "other") only
#: when it differs from TrainRecipe's default.
OWN_COLUMNS = ("lr", "weight_decay", "optimizer", "momentum", "nesterov", "schedule", "milestones", "gamma",
               "warmup_epochs", "epochs", "batch_size")  # fmt: skip
COLUMNS = ("lr", "weight decay", "optimizer", "schedule", "epochs", "batch", "loss", "options", "other")


@app.callback()
def suites_command(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the suites, with each method's resolved recipe, as JSON.")
    ] = False,
) -> None:
    """List every suite: dataset, balance, classes, dims, methods, backbone, epochs, seeds."""
    if ctx.invoked_subcommand is not None:
        return
    from protobench.suite.definition import available_suites, load_suite

    rows = [suite_row(load_suite(name), recipes=as_json) for name in available_suites()]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title="protobench suites")
    for column in ("suite", "dataset", "balanced / LT (ratio)", "classes", "dims", "methods", "backbone", "epochs",
                   "seeds"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"], r["dataset"], r["balance"], str(r["classes"] or "?"),
            ",".join(map(str, r["dims"])), ", ".join(r["methods"]), r["backbone"],
            str(r["epochs"]), ",".join(map(str, r["seeds"])),
        )  # fmt: skip
    page_console().print(table)


def suite_row(suite: Suite, recipes: bool) -> dict[str, Any]:
    """A suite's row of `suites` (and of `suites --json`, which adds each row's resolved recipe)."""
    from protobench.data import DATASETS

    spec = DATASETS.get(suite.dataset)
    ratios = [r for r in suite.imbalance_ratios if r is not None]
    if ratios:  # the suite subsamples a balanced training set
        balance = "long-tailed " + "/".join(f"{r:g}" for r in ratios)
    else:  # or the dataset's own splits are long-tailed (ImageNet-LT)
        balance = "long-tailed (dataset)" if spec.long_tailed else "balanced"
    row = {
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
    if recipes:
        row["recipes"] = suite_recipes(suite)
    return row


def suite_recipes(suite: Suite) -> dict[str, dict[str, Any]]:
    """Row -> its resolved recipe as JSON-ready data (``recipe_data``)."""
    from protobench.running.grid import row_specs

    return {row: recipe_data(spec) for row, spec in row_specs(suite).items()}


def recipe_data(spec: CellSpec) -> dict[str, Any]:
    """A row's recipe: the method it trains, the suite's loss family, the head's options as the engine
    builds it (defaults included) and every training key."""
    from protobench.methods import head_options

    train = dataclasses.asdict(spec.train)
    train["milestones"] = list(train["milestones"])
    return {"method": spec.method, "loss": spec.loss, "options": head_options(spec.method, spec.method_options),
            **train}  # fmt: skip


def recipe_cells(spec: CellSpec, all_options: bool) -> dict[str, str]:
    """A row's recipe as the text of the table's COLUMNS. ``all_options``: every option of the head;
    otherwise only those set away from the method's defaults (docs/recipes.md's table)."""
    from protobench.methods import METHODS, head_options
    from protobench.suite.recipe import TrainRecipe

    t = spec.train
    optimizer = t.optimizer
    if t.optimizer == "sgd":  # AdamW takes no momentum (engine.build_optimizer)
        optimizer += f", momentum {t.momentum:g}" + (", nesterov" if t.nesterov and t.momentum > 0 else "")
    schedule = t.schedule
    if t.schedule == "step":
        schedule += f" x{t.gamma:g} at epochs {', '.join(map(str, t.milestones)) or 'none'}"
    if t.warmup_epochs:
        schedule = f"warm-up {t.warmup_epochs} epoch{'s' if t.warmup_epochs != 1 else ''}, then {schedule}"
    options = head_options(spec.method, spec.method_options)
    if not all_options:
        cls = METHODS.get(spec.method)
        defaults = {**cls.defaults, **cls.later_defaults}
        options = {k: v for k, v in options.items() if v != defaults.get(k)}
    default = TrainRecipe()
    other = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)
             if f.name not in OWN_COLUMNS and getattr(t, f.name) != getattr(default, f.name)}  # fmt: skip
    return {
        "lr": f"{t.lr:g}",
        "weight decay": f"{t.weight_decay:g}",
        "optimizer": optimizer,
        "schedule": schedule,
        "epochs": str(t.epochs),
        "batch": str(t.batch_size),
        "loss": spec.loss,
        "options": ", ".join(f"{k}={v}" for k, v in options.items()) or "-",
        "other": ", ".join(f"{k}={v}" for k, v in other.items()) or "-",
    }


def row_label(suite: Suite, row: str) -> str:
    """A row's name, with the method it trains when it is a variant."""
    method = suite.method_of(row)
    return row if method == row else f"{row} ({method})"


# ---------------------------------------------------------------- the grid's cells


@dataclass(frozen=True)
class GridCount:
    """A grid's cells: ``total`` in the suite's grid, ``here`` in the part looked at (a shard, or all), the
    n/a ones among them by row with each reason, and, counted against a results store, how many are
    ``finished`` there and how many of those records are ``stale``; ``to_train`` is what a run would train."""

    product: str
    total: int
    here: int
    not_applicable: dict[str, list[str]]
    to_train: int
    finished: int | None = None
    stale: int | None = None

    @property
    def n_a(self) -> int:
        """How many of the cells looked at are n/a."""
        return sum(map(len, self.not_applicable.values()))

    def data(self) -> dict[str, Any]:
        """The counts as JSON-ready data (`suites show --json`)."""
        return {"cells": self.total, "cells_here": self.here, "not_applicable": self.n_a, "finished": self.finished,
                "stale": self.stale, "to_train": self.to_train}  # fmt: skip

    def lines(self, results: Path | None, keep_stale: bool) -> list[str]:
        """The counts as lines of text (``results``: the store they were counted against)."""
        lines = [f"cells: {self.product} = {self.total}" + (f"; this shard has {self.here}" if self.here != self.total
                                                            else "")]  # fmt: skip
        if self.not_applicable:
            each = "; ".join(f"{row} x{len(why)}, e.g. {why[0]}" for row, why in self.not_applicable.items())
            lines.append(f"n/a: {self.n_a} (a run records them n/a without training: {each})")
        if self.finished is not None:
            stale = ""
            if self.stale:  # as the run's own note says it (runner.run_suite)
                stale = f"; {self.stale} stale (made by older code), {'kept' if keep_stale else 'trained again'}"
            lines.append(f"finished in {results}: {self.finished}{stale}")
        lines.append(f"to train: {self.to_train}")
        return lines


def grid_count(suite: Suite, cells: list[Cell], plan: GridPlan | None) -> GridCount:
    """The ``GridCount`` of ``cells`` (the grid, or a shard of it), with ``plan`` (``grid.plan_suite`` of the
    same cells) counted against its results store."""
    from protobench.running.grid import not_applicable

    sizes = [(len(suite.methods), "methods"), (len(suite.dims), "dims"), (len(suite.seeds), "seeds")]
    if suite.long_tailed:
        sizes.append((len(suite.imbalance_ratios), "ratios"))
    total = math.prod(n for n, _ in sizes)
    reasons: dict[str, list[str]] = {}
    for cell in cells:
        if (why := not_applicable(suite, cell)) is not None:
            reasons.setdefault(cell.method, []).append(why)
    product = " x ".join(f"{n} {what if n != 1 else what[:-1]}" for n, what in sizes)
    if plan is None:
        return GridCount(product, total, len(cells), reasons, len(cells) - sum(map(len, reasons.values())))
    to_train = sum(not_applicable(suite, p.cell) is None for p in plan.cells)
    return GridCount(product, total, len(cells), reasons, to_train, plan.finished, plan.stale)


def print_suite(suite: Suite, lines: list[str]) -> None:
    """The suite's header, ``lines`` about its cells, and the table of each row's resolved recipe."""
    from rich.table import Table

    from protobench.data import DATASETS
    from protobench.running.grid import row_specs

    classes = DATASETS.get(suite.dataset).num_classes
    where = f" ({suite.path})" if suite.path else ""
    typer.echo(f"suite {suite.name}{where}: {suite.dataset}, {classes} classes, backbone {suite.backbone}, "
               f"dims {','.join(map(str, suite.dims))}, seeds {','.join(map(str, suite.seeds))}")  # fmt: skip
    for line in lines:
        typer.echo(line)
    table = Table(title=f"{suite.name}: each method's resolved recipe (method options with their defaults)",
                  title_justify="left")  # fmt: skip
    table.add_column("method", overflow="fold")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row, spec in row_specs(suite).items():
        cells = recipe_cells(spec, all_options=True)
        table.add_row(row_label(suite, row), *(cells[c] for c in COLUMNS))
    page_console().print(table)


def suite_json(suite: Suite, count: GridCount) -> dict[str, Any]:
    """`suites show --json` of one suite."""
    return {"name": suite.name, "path": suite.path, **count.data(), "recipes": suite_recipes(suite)}


def print_dry_run(
    suite: Suite, results: Path, *, device: torch.device, deterministic: bool, shard: Shard | None, keep_stale: bool
) -> None:
    """`run --dry-run`: what ``run`` with the same flags would train, counted as it plans its cells (for
    the device, the results store and the shard); nothing is trained or written."""
    from protobench.running import sharding
    from protobench.running.grid import plan_suite, planned_cells

    every = planned_cells(suite, results, deterministic=deterministic, device=device)
    cells = [p.cell for p in sharding.take(every, shard)]
    plan = plan_suite(suite, results, deterministic=deterministic, device=device, shard=shard,
                      keep_stale=keep_stale)  # fmt: skip
    count = grid_count(suite, cells, plan)
    print_suite(suite, [*count.lines(results, keep_stale), "dry run: nothing trained, nothing written"])


# ---------------------------------------------------------------- suites show


@app.command("show")
def show_command(
    suites: Annotated[
        list[str] | None,
        typer.Argument(
            help="Suite names (see `protobench suites`) or paths to suite YAMLs.", metavar="SUITE", show_default=False
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every suite `protobench suites` lists.")] = False,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods instead of the suite's.")] = None,
    dims: Annotated[str | None, typer.Option(help="Comma-separated embedding dims, e.g. 2,8 (2..4096).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the suite's epochs, as `run --epochs` does.")] = None,
    results: Annotated[
        Path | None, typer.Option(help="Also count the cells this results store holds finished.", show_default=False)
    ] = None,
    device: Annotated[
        str, typer.Option(help="With --results: the device a run would use (it sets the precision, so the hash).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the cells and recipes as JSON.")] = False,
    markdown: Annotated[
        bool, typer.Option("--md", help="Print one Markdown table of the recipes (docs/recipes.md holds --all's).")
    ] = False,
) -> None:
    """Print a suite's cells and each method's resolved recipe (lr, weight decay, schedule, epochs, loss, ...)."""
    from protobench.suite.definition import available_suites, load_suite

    if every and suites:
        raise UserError("suites show: give suite names or --all, not both")
    if not every and not suites:
        raise UserError("suites show: name one or more suites, or give --all; e.g. protobench suites show quickstart")
    if as_json and markdown:
        raise UserError("--json and --md both given; choose one output")
    if results is not None:
        check_results_flag(results, must_exist=True)
    names = list(available_suites()) if every else list(suites or [])
    loaded = [with_grid_flags(load_suite(name), methods, dims, seeds, epochs) for name in names]
    if markdown:
        typer.echo(recipes_markdown(loaded), nl=False)
        return
    shown = []
    for suite in loaded:
        count = show_count(suite, results, device)
        if as_json:
            shown.append(suite_json(suite, count))
        else:
            print_suite(suite, count.lines(results, keep_stale=False))
    if as_json:
        typer.echo(json.dumps(shown, indent=1))


def show_count(suite: Suite, results: Path | None, device: str) -> GridCount:
    """``grid_count`` of the whole grid; with ``results``, counted as a run on ``device`` would plan it."""
    from protobench.running.grid import expand

    plan = None
    if results is not None:
        from protobench.core.device import resolve_device
        from protobench.running.grid import plan_suite

        plan = plan_suite(suite, results, deterministic=False, device=resolve_device(device))
    return grid_count(suite, expand(suite), plan)


def recipes_markdown(suites: list[Suite]) -> str:
    """One Markdown table of every suite's rows and recipes; within a suite, rows with the same recipe
    share a line, and options are those set away from the method's defaults (`protobench methods`)."""
    from protobench.running.grid import row_specs

    lines = ["| suite | methods | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for suite in suites:
        shared: dict[tuple[str, ...], list[str]] = {}
        for row, spec in row_specs(suite).items():
            cells = recipe_cells(spec, all_options=False)
            shared.setdefault(tuple(cells[c] for c in COLUMNS), []).append(row_label(suite, row))
        for cells, rows in shared.items():
            lines.append(f"| {suite.name} | {', '.join(rows)} | " + " | ".join(c.replace("|", "\\|") for c in cells)
                         + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
