"""Expand a suite into its grid, skip finished cells, train the rest and store one record per cell."""

from __future__ import annotations

import dataclasses
import itertools
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protobench import results
from protobench.methods import METHODS, NotApplicable
from protobench.suites import Suite


@dataclass(frozen=True)
class Cell:
    """One grid point of a suite."""

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
    method_cls = METHODS.get(cell.method)
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
        "method": cell.method,
        "method_options": {**method_cls.defaults, **suite.method_options.get(cell.method, {})},
        "dim": cell.dim,
        "seed": cell.seed,
        "train": dataclasses.asdict(suite.train),
        "deterministic": deterministic,
        "precision": precision,
    }


@dataclass
class RunSummary:
    """Counts of what a run did."""

    total: int = 0
    skipped: int = 0
    trained: int = 0
    not_applicable: int = 0
    failed: int = 0


def run_suite(
    suite: Suite,
    *,
    results_dir: Path,
    data_dir: Path | None,
    device: torch.device,
    deterministic: bool = False,
    reporter: Any = None,
) -> RunSummary:
    """Run every unfinished cell of ``suite``; each finished cell is on disk before the next starts."""
    from protobench.data.prepare import prepare_cell_data
    from protobench.engine import device_name, resolve_precision, train_cell

    from protobench.cli.progress import PlainReporter

    reporter = reporter or PlainReporter()
    precision = resolve_precision(suite.train.precision, device)
    cells = expand(suite)
    summary = RunSummary(total=len(cells))
    plan = []
    for cell in cells:
        config = cell_config(suite, cell, deterministic=deterministic, precision=precision)
        digest = results.config_hash(config)
        path = results.cell_path(results_dir, suite.name, cell.method, cell.dim, cell.seed, cell.ratio, digest)
        if results.is_finished(path):
            summary.skipped += 1
        else:
            plan.append((cell, config, digest, path))
    reporter.start_run(suite, len(cells), summary.skipped, device_name(device))
    data_by_ratio: dict[float | None, Any] = {}
    for index, (cell, config, digest, path) in enumerate(plan, start=1):
        if cell.ratio not in data_by_ratio:
            # Missing data is a UserError: it stops the run before any cell claims to have failed.
            data_by_ratio[cell.ratio] = prepare_cell_data(suite, data_dir, cell.ratio)
        data = data_by_ratio[cell.ratio]
        setting = {k: v for k, v in config.items() if k != "seed"}
        record: dict[str, Any] = {
            "suite": suite.name,
            "dataset": suite.dataset,
            "method": cell.method,
            "dim": cell.dim,
            "seed": cell.seed,
            "imbalance_ratio": cell.ratio,
            "column": suite.column(cell.dim, cell.ratio),
            "config": config,
            "config_hash": digest,
            "setting_hash": results.config_hash(setting),
            "data": {"source": data.source, "counts": data.counts},
            "versions": results.versions(),
            "git_commit": results.git_commit(),
            "device": device_name(device),
        }
        reporter.start_cell(index, len(plan), cell.label())
        try:
            outcome = train_cell(
                suite, data, cell.method, cell.dim, cell.seed,
                device=device, deterministic=deterministic, progress=reporter,
            )  # fmt: skip
        except NotApplicable as reason:
            record.update(status="n/a", reason=str(reason))
            summary.not_applicable += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a failing cell is recorded and the grid goes on
            record.update(status="error", reason=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
            summary.failed += 1
        else:
            record.update(
                status="ok",
                metrics=outcome.metrics,
                per_class_accuracy=outcome.per_class_accuracy,
                history=outcome.history,
                method_hyperparameters=outcome.method_hyperparameters,
                timings=outcome.timings,
            )
            if cell.ratio is not None:
                record["shot_groups"] = shot_group_accuracy(data.counts["train"], outcome.per_class_accuracy)
            summary.trained += 1
        record["finished_at"] = results.now()
        results.write_record(path, record)
        reporter.end_cell(record)
    reporter.end_run(summary)
    return summary


def shot_group_accuracy(train_counts: list[int], per_class: list[float]) -> dict[str, dict[str, float]]:
    """Accuracy of many/medium/few-shot classes, by train count and by the authors' index ranges."""
    from protobench.data.longtail import group_accuracy, index_range_groups, shot_groups

    return {
        "by_count": group_accuracy(per_class, shot_groups(train_counts)),
        "by_index": group_accuracy(per_class, index_range_groups(len(train_counts))),
    }
