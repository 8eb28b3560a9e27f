"""Expand a suite into its grid, skip finished cells, train the rest and store one record per cell."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from protobench import locks, results
from protobench.checkpoints import CellCheckpoints, describe_position
from protobench.device import device_name
from protobench.distributed import DataParallel
from protobench.grid import PlannedCell, plan_suite, planned_cells
from protobench.interrupts import StopOnSignal, signals_held
from protobench.methods import NotApplicable
from protobench.progress import PlainReporter, RunReporter
from protobench.results import provenance
from protobench.sharding import Shard
from protobench.suites import Suite

if TYPE_CHECKING:
    from protobench.data.prepare import CellData


@dataclass
class RunSummary:
    """Counts of what a run did; ``interrupted`` is the signal that stopped it, if any."""

    total: int = 0
    skipped: int = 0
    trained: int = 0
    not_applicable: int = 0
    failed: int = 0
    resumed: int = 0
    locked: int = 0  # left to another process (--no-wait)
    reused: int = 0  # copied from a finished record of the same config (docs/ablations.md, "Reuse")
    interrupted: int | None = None
    worker_lost: bool = False  # a --jobs worker process died (killed, out of memory) and the run stopped

    def add(self, part: RunSummary) -> None:
        """Add a worker's counts (its total and skips are already in the plan's)."""
        self.skipped += part.skipped
        self.trained += part.trained
        self.not_applicable += part.not_applicable
        self.failed += part.failed
        self.resumed += part.resumed
        self.locked += part.locked
        self.reused += part.reused
        self.interrupted = self.interrupted or part.interrupted


@dataclass(frozen=True)
class RunOptions:
    """How cells run: where the data is, on which (resolved) device, how they checkpoint (docs/long-runs.md)
    and what they do about cells another process holds."""

    data_dir: Path | None
    device: torch.device
    deterministic: bool = False
    keep_checkpoints: bool = False  # keep the final checkpoint beside the record as <record stem>.pt
    cuda_graphs: bool = True
    checkpoint_minutes: float = 10.0  # inside an epoch; every epoch's end is checkpointed anyway
    restart: bool = False  # discard unfinished cells' checkpoints instead of resuming them
    wait: bool = True  # wait for cells locked by another process (else skip them)
    reuse: bool = True  # copy a finished record of the same config from elsewhere in the store
    shard: Shard | None = None  # this job's part of the grid (--shard I/N)
    parallel: DataParallel | None = None  # this process's rank under torchrun (docs/distributed.md)
    lock_stale_after: float = locks.STALE_AFTER_S


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
    are resolved here, once. SIGINT/SIGTERM stop the run cleanly (``RunSummary.interrupted``).
    """
    device = options.device
    reporter = reporter or PlainReporter()
    plan, finished = plan_suite(
        suite, results_dir, deterministic=options.deterministic, device=device, shard=options.shard
    )
    summary = RunSummary(total=len(plan) + finished, skipped=finished)
    reporter.start_run(suite, summary.total, summary.skipped, device_name(device))
    group = options.parallel
    run = provenance(device, options.cuda_graphs and group is None, group.world_size if group else 1)
    parallel = jobs > 1 and len(plan) > 1
    with StopOnSignal(forward=parallel) as stop:
        if group is not None and not group.is_main:
            follow(suite, results_dir, options, stop)
        elif not parallel:
            try:
                run_cells(suite, plan, options, run, reporter, summary, stop)
            finally:
                if group is not None:
                    group.broadcast(("done",))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            shards = [plan[k::jobs] for k in range(min(jobs, len(plan)))]
            threads = max(1, torch.get_num_threads() // len(shards)) if device.type == "cpu" else 0
            context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
            with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
                with signals_held():  # the workers start with SIGINT/SIGTERM held until they can stop cleanly
                    futures = [
                        pool.submit(run_shard, suite, cells, options, k, threads) for k, cells in enumerate(shards)
                    ]
                try:
                    for future in futures:
                        summary.add(future.result())
                except BrokenProcessPool:  # what it finished is on disk; its cell's lock goes stale
                    summary.worker_lost = True
    summary.interrupted = summary.interrupted or stop.received
    reporter.end_run(summary)
    return summary


def run_shard(suite: Suite, plan: list[PlannedCell], options: RunOptions, worker: int, threads: int) -> RunSummary:
    """A worker process's share of a parallel run (plain progress lines, prefixed by the worker).

    The worker resolves its own provenance once: its device name carries its own thread count.
    It stops cleanly on the first SIGINT/SIGTERM (which the main process passes on) and ignores repeats.
    """
    if threads:
        torch.set_num_threads(threads)
    summary = RunSummary(total=len(plan))
    run = provenance(options.device, options.cuda_graphs)
    with StopOnSignal(second_stops_now=False) as stop:
        run_cells(suite, plan, options, run, PlainReporter(tag=f"w{worker}"), summary, stop)
    summary.interrupted = stop.received
    return summary


def follow(suite: Suite, results_dir: Path, options: RunOptions, stop: StopOnSignal) -> None:
    """A rank other than 0 under torchrun: train each cell rank 0 announces, together with it, until it
    says it is done. Rank 0 alone decides (locks, skips, resumes) and writes records and checkpoints."""
    from protobench import engine
    from protobench.data.prepare import prepare_cell_data

    group = options.parallel
    assert group is not None
    cells = {c.digest: c for c in planned_cells(suite, results_dir, deterministic=options.deterministic,
                                                 device=options.device)}  # fmt: skip
    data_by_ratio: dict[float | None, CellData] = {}
    while (message := group.broadcast(None))[0] != "done":
        _, digest, resume_path = message
        cell = cells[digest].cell
        if cell.ratio not in data_by_ratio:
            data_by_ratio[cell.ratio] = prepare_cell_data(suite.data_settings, options.data_dir, cell.ratio)
        resume = torch.load(resume_path, map_location=options.device, weights_only=True) if resume_path else None
        checkpointing = engine.Checkpointing(
            lambda state: None, options.checkpoint_minutes * 60, resume, stop.requested
        )
        with contextlib.suppress(NotApplicable, engine.Interrupted, engine.TrainingFailed):  # rank 0 records it
            engine.train_cell(
                suite, data_by_ratio[cell.ratio], cell.method, cell.dim, cell.seed,
                device=options.device, precision=cells[digest].config["precision"],
                deterministic=options.deterministic, cuda_graphs=False, checkpointing=checkpointing, parallel=group,
            )  # fmt: skip


def release_device_memory(device: torch.device) -> None:
    """Free what a failed cell left behind (after a CUDA out-of-memory error the next cell needs it)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_cells(
    suite: Suite,
    plan: list[PlannedCell],
    options: RunOptions,
    run: dict[str, Any],
    reporter: RunReporter,
    summary: RunSummary,
    stop: StopOnSignal | None = None,
) -> None:
    """Train the planned cells one after another, writing each record as soon as it is finished.

    ``run`` is the provenance every record of this process shares (``results.provenance``). Each cell
    is trained under its lock (protobench/locks.py): a cell another process holds is put off until
    the others are done, then waited for (``options.wait``) or skipped. A cell that cannot run at its
    setting is recorded as n/a; one that raises is recorded as failed and the grid goes on; missing
    data (a UserError) stops the run before any cell claims to have failed; a stop request ends the
    run after the cell in training has saved its checkpoint.
    """
    data_by_ratio: dict[float | None, CellData] = {}
    warned: set[str] = set()

    def train(index: int, planned: PlannedCell, held: locks.CellLock) -> bool:
        with held:
            return run_locked_cell(suite, planned, (index, len(plan)), options, run, reporter, summary,
                                   stop, data_by_ratio, warned)  # fmt: skip

    deferred: list[tuple[int, PlannedCell]] = []
    for index, planned in enumerate(plan, start=1):
        held = locks.try_lock(planned.path, stale_after=options.lock_stale_after)
        if isinstance(held, locks.LockHolder):
            deferred.append((index, planned))
            continue
        if not train(index, planned, held):
            return
    for index, planned in deferred:
        label = planned.cell.label()
        if not options.wait:
            holder = locks.read_holder(locks.lock_path(planned.path))
            reporter.note(f"[{index}/{len(plan)}] {label} skipped: locked by {holder.describe() if holder else '?'}")
            summary.locked += 1
            continue
        held = locks.wait_for(
            planned.path,
            stale_after=options.lock_stale_after,
            on_wait=lambda holder, label=label: reporter.note(f"{label}: waiting for {holder.describe()}"),
            should_stop=stop.requested if stop else None,
        )
        if held is None:
            if stop is not None and stop.requested():
                return
            reporter.note(f"[{index}/{len(plan)}] {label} finished by another process")
            summary.skipped += 1
            continue
        if not train(index, planned, held):
            return


def run_locked_cell(
    suite: Suite,
    planned: PlannedCell,
    position: tuple[int, int],
    options: RunOptions,
    run: dict[str, Any],
    reporter: RunReporter,
    summary: RunSummary,
    stop: StopOnSignal | None,
    data_by_ratio: dict[float | None, CellData],
    warned: set[str] | None = None,
) -> bool:
    """Train one cell whose lock this process holds, resuming its checkpoint; False when stopped.

    ``position`` is the cell's (i, n) in this process's plan; ``data_by_ratio`` caches the
    prepared data of each imbalance ratio across the cells of one process; ``warned`` holds the
    degenerate-prototype warnings already given (each set is checked, since sets depend on the seed).
    """
    from protobench import engine
    from protobench.data.prepare import prepare_cell_data

    cell, config = planned.cell, planned.config
    label = f"[{position[0]}/{position[1]}] {cell.label()}"
    if results.is_finished(planned.path):  # another process finished it after our plan was made
        reporter.note(f"{label} finished by another process")
        summary.skipped += 1
        return True
    root = planned.path.parents[2]  # <store>/<suite>/<row>/<record>
    if options.reuse and (twin := results.find_twin(root, planned.digest, planned.path)) is not None:
        results.reuse(root, twin, planned.path, suite=suite.name, column=suite.column(cell.dim, cell.ratio),
                      row=cell.method)  # fmt: skip
        reporter.note(f"{label} reused {twin.relative_to(root).as_posix()} (the same config)")
        summary.reused += 1
        return True
    checkpoints = CellCheckpoints(planned.path, planned.digest, config)
    if options.restart:
        checkpoints.discard()
    loaded = checkpoints.load(options.device, reporter.warn)
    if loaded is not None:
        epochs = suite.recipe_for(cell.method).epochs
        reporter.note(f"{label} resuming from {describe_position(loaded[0], epochs)} ({loaded[1].name})")
        summary.resumed += 1
    if cell.ratio not in data_by_ratio:
        data_by_ratio[cell.ratio] = prepare_cell_data(suite.data_settings, options.data_dir, cell.ratio)
    data = data_by_ratio[cell.ratio]
    if warned is not None:
        warn_degenerate_prototypes(suite, cell.method, data.num_classes, cell.dim, cell.seed, reporter, warned)
    reporter.start_cell(*position, cell.label())
    record = results.new_record(
        suite=suite.name,
        column=suite.column(cell.dim, cell.ratio),
        config=config,
        digest=planned.digest,
        data={"source": data.source, "counts": data.counts},
        provenance=run,
        row=cell.method,
    )
    if options.parallel is not None:  # the other ranks train this cell with rank 0 (``follow``)
        options.parallel.broadcast(("train", planned.digest, str(loaded[1]) if loaded else None))
    checkpointing = engine.Checkpointing(
        save=checkpoints.save,
        every_seconds=options.checkpoint_minutes * 60,
        resume=loaded[0] if loaded else None,
        should_stop=stop.requested if stop else (lambda: False),
    )
    try:
        outcome = engine.train_cell(
            suite, data, cell.method, cell.dim, cell.seed,
            device=options.device, precision=config["precision"], deterministic=options.deterministic,
            cuda_graphs=options.cuda_graphs, progress=reporter, checkpointing=checkpointing,
            parallel=options.parallel,
        )  # fmt: skip
    except NotApplicable as reason:
        results.not_applicable(record, str(reason))
        summary.not_applicable += 1
    except engine.Interrupted as where:
        reporter.note(f"{label} {where}; checkpoint saved")
        return False
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        # A failed cell is recorded with its reason (and epoch, when it failed while training) and
        # the grid goes on; the error's frames hold the cell's tensors: drop them before the next cell.
        if isinstance(error, engine.TrainingFailed):
            results.failed(record, error.cause, epoch=error.epoch)
        else:
            results.failed(record, error)
        summary.failed += 1
        del error
        release_device_memory(options.device)
    else:
        embeddings = (
            results.save_embeddings(results.embeddings_path(planned.path), outcome.embeddings)
            if outcome.embeddings is not None
            else None
        )
        # Kept before the record is written: a record on disk always has its checkpoint beside it.
        checkpoint = checkpoints.keep_final() if options.keep_checkpoints else None
        results.complete(record, outcome, checkpoint, embeddings)
        summary.trained += 1
    results.write_record(planned.path, record)
    if record["status"] != "error":  # a failed cell is retried from its last checkpoint
        checkpoints.discard()
    reporter.end_cell(record)
    return True


def warn_degenerate_prototypes(
    suite: Suite, method: str, K: int, dim: int, seed: int, reporter: RunReporter, warned: set[str]
) -> None:
    """Warn when ``method``'s fixed prototypes at (K, dim, seed) are degenerate (protobench.prototypes.degeneracy),
    unless the same warning was given already (a seed-independent set, another imbalance ratio)."""
    from protobench.prototypes import generate
    from protobench.prototypes.degeneracy import degeneracy_warning, method_prototype_request

    request = method_prototype_request(suite.method_of(method), suite.options_for(method))
    if request is None:
        return
    kind, params = request
    text = degeneracy_warning(generate(kind, K, dim, seed, **params), f"{method} ({kind} prototypes)")
    if text is not None and text not in warned:
        warned.add(text)
        reporter.warn(text)
