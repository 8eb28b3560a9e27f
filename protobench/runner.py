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


@dataclass(frozen=True)
class PlannedCell:
    """A cell still to run, with its resolved config and where its record goes."""

    cell: Cell
    config: dict[str, Any]
    digest: str
    path: Path


def plan_suite(
    suite: Suite, results_dir: Path, *, deterministic: bool, precision: str
) -> tuple[list[PlannedCell], int]:
    """The unfinished cells of ``suite`` and how many are already finished in ``results_dir``."""
    plan, finished = [], 0
    for cell in expand(suite):
        config = cell_config(suite, cell, deterministic=deterministic, precision=precision)
        digest = results.config_hash(config)
        path = results.cell_path(results_dir, suite.name, cell.method, cell.dim, cell.seed, cell.ratio, digest)
        if results.is_finished(path):
            finished += 1
        else:
            plan.append(PlannedCell(cell, config, digest, path))
    return plan, finished


@dataclass(frozen=True)
class RunOptions:
    """How cells run: where the data is, on which device, and what is saved beside each record."""

    data_dir: Path | None
    device: str
    deterministic: bool = False
    save_checkpoints: bool = False
    cuda_graphs: bool = True


def run_suite(
    suite: Suite,
    *,
    results_dir: Path,
    options: RunOptions,
    reporter: Any = None,
    jobs: int = 1,
) -> RunSummary:
    """Run every unfinished cell of ``suite``; each finished cell is on disk before the next starts.

    ``jobs`` > 1 runs that many cells at once in worker processes sharing the device: small
    models cannot fill a large GPU alone (speed.md, point 5), and on a CPU each worker gets
    an equal share of the cores.
    """
    from protobench.cli.progress import PlainReporter
    from protobench.engine import device_name, resolve_precision

    device = torch.device(options.device)
    reporter = reporter or PlainReporter()
    precision = resolve_precision(suite.train.precision, device)
    plan, finished = plan_suite(suite, results_dir, deterministic=options.deterministic, precision=precision)
    summary = RunSummary(total=len(plan) + finished, skipped=finished)
    reporter.start_run(suite, summary.total, summary.skipped, device_name(device))
    if jobs <= 1 or len(plan) <= 1:
        run_cells(suite, plan, options, reporter, summary)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shards = [plan[k::jobs] for k in range(min(jobs, len(plan)))]
        threads = max(1, torch.get_num_threads() // len(shards)) if device.type == "cpu" else 0
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
            futures = [pool.submit(run_shard, suite, shard, options, k, threads) for k, shard in enumerate(shards)]
            for future in futures:
                part = future.result()
                summary.trained += part.trained
                summary.not_applicable += part.not_applicable
                summary.failed += part.failed
    reporter.end_run(summary)
    return summary


def run_shard(suite: Suite, plan: list[PlannedCell], options: RunOptions, worker: int, threads: int) -> RunSummary:
    """A worker process's share of a parallel run (plain progress lines, prefixed by the worker)."""
    from protobench.cli.progress import PlainReporter

    if threads:
        torch.set_num_threads(threads)
    summary = RunSummary(total=len(plan))
    run_cells(suite, plan, options, PlainReporter(tag=f"w{worker}"), summary)
    return summary


def run_cells(suite: Suite, plan: list[PlannedCell], options: RunOptions, reporter: Any, summary: RunSummary) -> None:
    """Train the planned cells one after another, writing each record as soon as it is finished."""
    from protobench import engine
    from protobench.data.prepare import prepare_cell_data

    device = torch.device(options.device)
    provenance = {
        "versions": results.versions(),
        "git_commit": results.git_commit(),
        "device": engine.device_name(device),
        # How the step ran (replayed from a CUDA graph or eager): speed, not numbers, so not in the config.
        "cuda_graphs": engine.replays_graphs(device, options.cuda_graphs),
    }
    data_by_ratio: dict[float | None, Any] = {}
    for index, planned in enumerate(plan, start=1):
        cell, config, path = planned.cell, planned.config, planned.path
        if cell.ratio not in data_by_ratio:
            # Missing data is a UserError: it stops the run before any cell claims to have failed.
            data_by_ratio[cell.ratio] = prepare_cell_data(suite, options.data_dir, cell.ratio)
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
            "config_hash": planned.digest,
            "setting_hash": results.config_hash(setting),
            "data": {"source": data.source, "counts": data.counts},
            **provenance,
        }
        reporter.start_cell(index, len(plan), cell.label())
        try:
            outcome = engine.train_cell(
                suite, data, cell.method, cell.dim, cell.seed,
                device=device, deterministic=options.deterministic, cuda_graphs=options.cuda_graphs,
                progress=reporter,
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
            if options.save_checkpoints:
                # Written before the record: a record on disk always has its checkpoint beside it.
                record["checkpoint"] = save_checkpoint(path.with_suffix(".pt"), outcome.state, config)
            summary.trained += 1
        record["finished_at"] = results.now()
        results.write_record(path, record)
        reporter.end_cell(record)


def save_checkpoint(path: Path, state: dict[str, Any], config: dict[str, Any]) -> str:
    """Save backbone, method (prototypes, assignment, representatives, centroids) and optimiser state atomically."""
    from protobench.paths import atomic_write

    atomic_write(path, lambda f: torch.save({**state, "config": config}, f))
    return path.name


def shot_group_accuracy(train_counts: list[int], per_class: list[float]) -> dict[str, dict[str, float]]:
    """Accuracy of many/medium/few-shot classes, by train count and by the authors' index ranges."""
    from protobench.data.longtail import group_accuracy, index_range_groups, shot_groups

    return {
        "by_count": group_accuracy(per_class, shot_groups(train_counts)),
        "by_index": group_accuracy(per_class, index_range_groups(len(train_counts))),
    }
