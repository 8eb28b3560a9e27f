"""Expand a suite into its grid, skip finished cells, train the rest and store one record per cell."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from protobench import results
from protobench.device import device_name, resolve_precision
from protobench.methods import NotApplicable, resolved_options
from protobench.progress import PlainReporter, RunReporter
from protobench.results import provenance
from protobench.suites import Suite

if TYPE_CHECKING:
    from protobench.data.prepare import CellData


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
        "method_options": resolved_options(cell.method, suite.method_options.get(cell.method, {})),
        "dim": cell.dim,
        "seed": cell.seed,
        "train": dataclasses.asdict(suite.recipe_for(cell.method)),
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
    suite: Suite, results_dir: Path, *, deterministic: bool, device: torch.device
) -> tuple[list[PlannedCell], int]:
    """The unfinished cells of ``suite`` and how many are already finished in ``results_dir``.

    Each cell's precision is resolved here, once, from its method's recipe and the device.
    """
    plan, finished = [], 0
    for planned in planned_cells(suite, results_dir, deterministic=deterministic, device=device):
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


@dataclass(frozen=True)
class RunOptions:
    """How cells run: where the data is, on which (resolved) device, and what is saved beside each record."""

    data_dir: Path | None
    device: torch.device
    deterministic: bool = False
    save_checkpoints: bool = False
    cuda_graphs: bool = True


def run_suite(
    suite: Suite,
    *,
    results_dir: Path,
    options: RunOptions,
    reporter: RunReporter | None = None,
    jobs: int = 1,
) -> RunSummary:
    """Run every unfinished cell of ``suite``; each finished cell is on disk before the next starts.

    ``jobs`` > 1 runs that many cells at once in worker processes sharing the device: small
    models cannot fill a large GPU alone (docs/engine.md, "Several cells at once"), and on a CPU
    each worker gets an equal share of the cores. Precision (per cell, in the plan) and provenance
    are resolved here, once.
    """
    device = options.device
    reporter = reporter or PlainReporter()
    plan, finished = plan_suite(suite, results_dir, deterministic=options.deterministic, device=device)
    summary = RunSummary(total=len(plan) + finished, skipped=finished)
    reporter.start_run(suite, summary.total, summary.skipped, device_name(device))
    run = provenance(device, options.cuda_graphs)
    if jobs <= 1 or len(plan) <= 1:
        run_cells(suite, plan, options, run, reporter, summary)
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
    """A worker process's share of a parallel run (plain progress lines, prefixed by the worker).

    The worker resolves its own provenance once: its device name carries its own thread count.
    """
    if threads:
        torch.set_num_threads(threads)
    summary = RunSummary(total=len(plan))
    run = provenance(options.device, options.cuda_graphs)
    run_cells(suite, plan, options, run, PlainReporter(tag=f"w{worker}"), summary)
    return summary


def run_cells(
    suite: Suite,
    plan: list[PlannedCell],
    options: RunOptions,
    run: dict[str, Any],
    reporter: RunReporter,
    summary: RunSummary,
) -> None:
    """Train the planned cells one after another, writing each record as soon as it is finished.

    ``run`` is the provenance every record of this process shares (``results.provenance``). A cell
    that cannot run at its setting is recorded as n/a; one that raises is recorded as failed and
    the grid goes on; missing data (a UserError) stops the run before any cell claims to have failed.
    """
    from protobench import engine
    from protobench.data.prepare import prepare_cell_data

    data_by_ratio: dict[float | None, CellData] = {}
    for index, planned in enumerate(plan, start=1):
        cell, config = planned.cell, planned.config
        if cell.ratio not in data_by_ratio:
            data_by_ratio[cell.ratio] = prepare_cell_data(suite.data_settings, options.data_dir, cell.ratio)
        data = data_by_ratio[cell.ratio]
        record = results.new_record(
            suite=suite.name,
            column=suite.column(cell.dim, cell.ratio),
            config=config,
            digest=planned.digest,
            data={"source": data.source, "counts": data.counts},
            provenance=run,
        )
        reporter.start_cell(index, len(plan), cell.label())
        try:
            outcome = engine.train_cell(
                suite, data, cell.method, cell.dim, cell.seed,
                device=options.device, precision=config["precision"], deterministic=options.deterministic,
                cuda_graphs=options.cuda_graphs, progress=reporter,
            )  # fmt: skip
        except NotApplicable as reason:
            results.not_applicable(record, str(reason))
            summary.not_applicable += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            results.failed(record, error)
            summary.failed += 1
        else:
            # Written before the record: a record on disk always has its checkpoint beside it.
            checkpoint = (
                results.save_checkpoint(planned.path.with_suffix(".pt"), outcome.state, config)
                if options.save_checkpoints
                else None
            )
            embeddings = (
                results.save_embeddings(results.embeddings_path(planned.path), outcome.embeddings)
                if outcome.embeddings is not None
                else None
            )
            results.complete(record, outcome, checkpoint, embeddings)
            summary.trained += 1
        results.write_record(planned.path, record)
        reporter.end_cell(record)
