"""A suite's grid: its cells (method x dim x seed x ratio), each cell's resolved config and hash, and
the plan of a run (which cells are still to train, in which job's shard)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protobench.core.device import resolve_precision
from protobench.methods import METHODS, resolved_options
from protobench.running import sharding
from protobench.running.sharding import Shard
from protobench.store import records as results
from protobench.store import versions as numerics
from protobench.suite.definition import Suite
from protobench.suite.spec import CellSpec


@dataclass(frozen=True)
class Cell:
    """One grid point of a suite; ``method`` is the row: a registered method or one of the suite's variants."""

    method: str
    dim: int
    seed: int
    ratio: float | None

    def label(self) -> str:
        ratio = f" r={self.ratio:g}" if self.ratio is not None else ""
        return f"{self.method} d={self.dim} s={self.seed}{ratio}"


def expand(suite: Suite) -> list[Cell]:
    """The grid in a stable order: ratio, dim, method, seed."""
    return [
        Cell(m, d, s, r)
        for r, d, m, s in itertools.product(suite.imbalance_ratios, suite.dims, suite.methods, suite.seeds)
    ]


def cell_spec(suite: Suite, cell: Cell, *, deterministic: bool, precision: str) -> CellSpec:
    """The cell resolved: its row's method and options, its recipe, and ``precision`` (already resolved
    for the device). A variant's spec is its method's with the variant's options: the row's name is not
    in it, so equal settings under different names (or suites) have one hash (docs/ablations.md, "Reuse")."""
    method = suite.method_of(cell.method)
    return CellSpec(
        dataset=suite.dataset,
        dataset_options=suite.dataset_options,
        val_size=suite.val_size,
        data_seed=suite.data_seed,
        imbalance_ratio=cell.ratio,
        imbalance_profile=suite.imbalance_profile,
        loss=suite.loss,
        backbone=suite.backbone,
        backbone_options=suite.backbone_options,
        method=method,
        method_options=resolved_options(method, suite.options_for(cell.method)),
        dim=cell.dim,
        seed=cell.seed,
        train=suite.recipe_for(cell.method),
        precision=precision,
        deterministic=deterministic,
        sync_batchnorm=suite.sync_batchnorm,
        data_source=suite.data_settings.source,
    )


def spec_for(
    suite: Suite, row: str, dim: int, seed: int = 0, ratio: float | None = None, *, precision: str = "fp32",
    deterministic: bool = False,
) -> CellSpec:  # fmt: skip
    """``cell_spec`` of one cell named by its coordinates (benchmarks and tests)."""
    return cell_spec(suite, Cell(row, dim, seed, ratio), deterministic=deterministic, precision=precision)


def cell_config(suite: Suite, cell: Cell, *, deterministic: bool, precision: str) -> dict[str, Any]:
    """The cell's config: ``cell_spec(...).config()``, the hash input its record holds."""
    return cell_spec(suite, cell, deterministic=deterministic, precision=precision).config()


def row_specs(suite: Suite) -> dict[str, CellSpec]:
    """Each row's ``cell_spec`` at its first cell, in the suite's row order: the method, options, loss
    family and recipe all its cells train with (only dim, seed and ratio differ between them). Precision
    stays as the recipe gives it; a run resolves ``auto`` for its device (``planned_cells``)."""
    specs: dict[str, CellSpec] = {}
    for cell in expand(suite):
        if cell.method not in specs:
            precision = suite.recipe_for(cell.method).precision
            specs[cell.method] = cell_spec(suite, cell, deterministic=False, precision=precision)
    return {row: specs[row] for row in suite.methods}


def not_applicable(suite: Suite, cell: Cell) -> str | None:
    """Why ``cell``'s head cannot exist, e.g. ETF below d = K-1 (a run records it n/a without training),
    asked of the method itself; None when it can."""
    from protobench.data import DATASETS

    classes = DATASETS.get(suite.dataset).num_classes
    return METHODS.get(suite.method_of(cell.method)).dimension_problem(classes, cell.dim)


@dataclass(frozen=True)
class PlannedCell:
    """A cell of a run: the suite's cell (``cell.method`` is the row), its spec and hash, where its
    record goes, and the names the record carries (suite, report column). Everything a worker or a
    torchrun follower needs to train it: they are handed planned cells, never the suite."""

    cell: Cell
    spec: CellSpec
    digest: str
    path: Path
    suite: str
    column: str

    @property
    def config(self) -> dict[str, Any]:
        return self.spec.config()


@dataclass(frozen=True)
class GridPlan:
    """What a run has to do: the ``cells`` still to train, how many are ``finished`` already, and how many
    records of the grid were made by older numerics (``stale``: trained again, or with ``keep_stale``
    counted among the finished; docs/engine.md)."""

    cells: list[PlannedCell]
    finished: int
    stale: int


def plan_suite(
    suite: Suite,
    results_dir: Path,
    *,
    deterministic: bool,
    device: torch.device,
    shard: Shard | None = None,
    keep_stale: bool = False,
) -> GridPlan:
    """The unfinished cells of ``suite`` (of its ``shard`` only, when given), counting a cell whose
    record is stale as unfinished unless ``keep_stale``. Each cell's precision is resolved here, once,
    from its method's recipe and the device."""
    plan, finished, stale = [], 0, 0
    every = planned_cells(suite, results_dir, deterministic=deterministic, device=device)
    for planned in sharding.take(every, shard):
        record = results.read_record(planned.path)
        done = results.finished(record)
        if done and numerics.is_stale(record):
            stale += 1
            done = keep_stale
        if done:
            finished += 1
        else:
            plan.append(planned)
    return GridPlan(plan, finished, stale)


def planned_cells(suite: Suite, results_dir: Path, *, deterministic: bool, device: torch.device) -> list[PlannedCell]:
    """Every cell of ``suite`` with its resolved config and record path, finished or not."""
    planned = []
    for cell in expand(suite):
        precision = resolve_precision(suite.recipe_for(cell.method).precision, device)
        spec = cell_spec(suite, cell, deterministic=deterministic, precision=precision)
        digest = spec.digest()
        path = results.cell_path(results_dir, suite.name, cell.method, cell.dim, cell.seed, cell.ratio, digest)
        planned.append(PlannedCell(cell, spec, digest, path, suite.name, suite.column(cell.dim, cell.ratio)))
    return planned
