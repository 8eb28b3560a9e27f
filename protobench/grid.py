"""A suite's grid: its cells (method x dim x seed x ratio), each cell's resolved config and hash, and
the plan of a run (which cells are still to train, in which job's shard)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protobench import results, sharding
from protobench.device import resolve_precision
from protobench.methods import resolved_options
from protobench.sharding import Shard
from protobench.suites import Suite, recipe_config


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


def cell_config(suite: Suite, cell: Cell, *, deterministic: bool, precision: str) -> dict[str, Any]:
    """Everything that changes a cell's numbers (and nothing that doesn't, such as the device)."""
    return {
        "dataset": suite.dataset,
        "dataset_options": suite.dataset_options,
        "val_size": suite.val_size,
        "data_seed": suite.data_seed,
        "imbalance_ratio": cell.ratio,
        "imbalance_profile": suite.imbalance_profile if cell.ratio is not None else None,
        "loss": suite.loss,
        "backbone": suite.backbone,
        "backbone_options": suite.backbone_options,
        # A variant's config is its method's with the variant's options: the row's name is not in it, so
        # equal settings under different names (or suites) have one hash (docs/ablations.md, "Reuse").
        "method": suite.method_of(cell.method),
        "method_options": resolved_options(suite.method_of(cell.method), suite.options_for(cell.method)),
        "dim": cell.dim,
        "seed": cell.seed,
        "train": recipe_config(suite.recipe_for(cell.method)),
        "deterministic": deterministic,
        "precision": precision,
        # Only when set (a key added later: the configs, and hashes, of earlier cells stay as they were).
        **({"sync_batchnorm": True} if suite.sync_batchnorm else {}),
    }


@dataclass(frozen=True)
class PlannedCell:
    """A cell still to run, with its resolved config and where its record goes."""

    cell: Cell
    config: dict[str, Any]
    digest: str
    path: Path


def plan_suite(
    suite: Suite, results_dir: Path, *, deterministic: bool, device: torch.device, shard: Shard | None = None
) -> tuple[list[PlannedCell], int]:
    """The unfinished cells of ``suite`` (of its ``shard`` only, when given) and how many of those are
    already finished in ``results_dir``.

    Each cell's precision is resolved here, once, from its method's recipe and the device.
    """
    plan, finished = [], 0
    every = planned_cells(suite, results_dir, deterministic=deterministic, device=device)
    for planned in sharding.take(every, shard):
        if results.is_finished(planned.path):
            finished += 1
        else:
            plan.append(planned)
    return plan, finished


def planned_cells(suite: Suite, results_dir: Path, *, deterministic: bool, device: torch.device) -> list[PlannedCell]:
    """Every cell of ``suite`` with its resolved config and record path, finished or not."""
    planned = []
    for cell in expand(suite):
        precision = resolve_precision(suite.recipe_for(cell.method).precision, device)
        config = cell_config(suite, cell, deterministic=deterministic, precision=precision)
        digest = results.config_hash(config)
        path = results.cell_path(results_dir, suite.name, cell.method, cell.dim, cell.seed, cell.ratio, digest)
        planned.append(PlannedCell(cell, config, digest, path))
    return planned
