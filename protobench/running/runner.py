"""Expand a suite into its grid, skip finished cells, train the rest and store one record per cell."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from protobench.core.device import device_name, torch_threads
from protobench.core.progress import PlainReporter, RunReporter, RunSummary
from protobench.methods import NotApplicable
from protobench.running import locks
from protobench.running.cell_job import CellJob, DataCache
from protobench.running.grid import PlannedCell, plan_suite, planned_cells
from protobench.running.interrupts import StopOnSignal, signals_held
from protobench.running.loggers import CellLogs
from protobench.running.options import RunOptions as RunOptions  # the run's options, re-exported
from protobench.running.packs import PackTrainer
from protobench.store.records import provenance
from protobench.suite.definition import Suite


def run_suite(
    suite: Suite,
    *,
    results_dir: Path,
    options: RunOptions,
    reporter: RunReporter | None = None,
    jobs: int = 1,
) -> RunSummary:
    """Run every unfinished cell of ``suite``; each finished cell is on disk before the next starts.

    A record made by older numerics than HEAD's is not finished: the cell trains again (unless
    ``options.keep_stale``). ``jobs`` > 1 runs that many cells at once in worker processes sharing the
    device: small models cannot fill a large GPU alone (docs/engine.md, "Several cells at once"), and
    on a CPU each worker gets an equal share of the cores. Workers, and torchrun's other ranks, are
    handed planned cells (each with its ``CellSpec``), never the suite. Precision (per cell, in the
    plan) and provenance are resolved here, once. SIGINT/SIGTERM stop the run cleanly
    (``RunSummary.interrupted``). ``options.threads`` torch threads are set for the run (and put back after).
    """
    with torch_threads(options.threads):
        return train_grid(suite, results_dir=results_dir, options=options, reporter=reporter, jobs=jobs)


def train_grid(
    suite: Suite, *, results_dir: Path, options: RunOptions, reporter: RunReporter | None, jobs: int
) -> RunSummary:
    """``run_suite``'s work, with the run's torch threads set: the device name in the records carries them."""
    device = options.device
    reporter = reporter or PlainReporter()
    grid = plan_suite(suite, results_dir, deterministic=options.deterministic, device=device, shard=options.shard,
                      keep_stale=options.keep_stale)  # fmt: skip
    plan = grid.cells
    summary = RunSummary(total=len(plan) + grid.finished, skipped=grid.finished)
    reporter.start_run(suite.name, summary.total, summary.skipped, device_name(device))
    if options.shard is not None and not summary.total:  # an array of more tasks than cells (docs/slurm/README.md)
        cells = len(planned_cells(suite, results_dir, deterministic=options.deterministic, device=device))
        reporter.note(f"shard {options.shard} has no cells: the grid has {cells}, fewer than its "
                      f"{options.shard.count} shards; nothing to do (an array of {cells} tasks covers it)")  # fmt: skip
    if grid.stale:
        kept = "kept (--keep-stale)" if options.keep_stale else "retraining"
        reporter.note(f"{grid.stale} stale (made by older code), {kept}; see protobench results check")
    group = options.collective
    run = provenance(device, options.cuda_graphs and group.graphs_allowed, group.world_size)
    parallel = jobs > 1 and len(plan) > 1
    with StopOnSignal(forward=parallel) as stop:
        if not group.is_main:
            follow(options, stop)
        elif not parallel:
            try:
                run_cells(plan, options, run, reporter, summary, stop)
            finally:
                group.broadcast(("done",))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            shards = [plan[k::jobs] for k in range(min(jobs, len(plan)))]
            # The run's threads split between the workers (on a GPU too: its workers' CPU work shares the cores).
            threads = max(1, torch.get_num_threads() // len(shards))
            context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
            with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
                with signals_held():  # the workers start with SIGINT/SIGTERM held until they can stop cleanly
                    futures = [pool.submit(run_shard, cells, options, k, threads) for k, cells in enumerate(shards)]
                try:
                    for future in futures:
                        summary.add(future.result())
                except BrokenProcessPool:  # what it finished is on disk; its cell's lock goes stale
                    summary.worker_lost = True
    summary.interrupted = summary.interrupted or stop.received
    reporter.end_run(summary)
    return summary


def run_shard(plan: list[PlannedCell], options: RunOptions, worker: int, threads: int) -> RunSummary:
    """A worker process's share of a parallel run (plain progress lines, prefixed by the worker).

    The worker resolves its own provenance once: its device name carries its own thread count.
    It stops cleanly on the first SIGINT/SIGTERM (which the main process passes on) and ignores repeats.
    """
    if threads:
        torch.set_num_threads(threads)
    summary = RunSummary(total=len(plan))
    run = provenance(options.device, options.cuda_graphs)
    with StopOnSignal(second_stops_now=False) as stop:
        run_cells(plan, options, run, PlainReporter(tag=f"w{worker}"), summary, stop)
    summary.interrupted = stop.received
    return summary


def follow(options: RunOptions, stop: StopOnSignal) -> None:
    """A rank other than 0 under torchrun: train each cell rank 0 announces (its planned cell, with the
    spec, and the checkpoint to resume), together with it, until it says it is done. Rank 0 alone
    decides (locks, skips, resumes) and writes records and checkpoints."""
    from protobench.engine import loop as engine

    group = options.collective
    data = DataCache(options.data_dir)
    while (message := group.broadcast(None))[0] != "done":
        _, planned, resume_path = message
        resume = torch.load(resume_path, map_location=options.device, weights_only=True) if resume_path else None
        checkpointing = engine.Checkpointing(
            lambda state: None, options.checkpoint_minutes * 60, resume, stop.requested
        )
        with contextlib.suppress(NotApplicable, engine.Interrupted, engine.TrainingFailed):  # rank 0 records it
            engine.train_cell(planned.spec, data.of(planned.spec), device=options.device, cuda_graphs=False,
                              checkpointing=checkpointing, collective=group)  # fmt: skip


def run_cells(
    plan: list[PlannedCell],
    options: RunOptions,
    run: dict[str, Any],
    reporter: RunReporter,
    summary: RunSummary,
    stop: StopOnSignal | None = None,
) -> None:
    """Train the planned cells one after another (in packs of ``options.pack``: protobench/running/packs.py),
    writing each record as soon as it is finished. ``run`` is the provenance the records share. Each cell
    trains under its lock (protobench/running/locks.py): one another process holds is put off, then waited
    for (``options.wait``) or skipped. A cell that cannot run is recorded n/a, one that raises failed (the
    grid goes on); missing data (a UserError) stops the run before any cell claims to have failed; a stop
    request ends the run once the cells in training have saved their checkpoints.
    """
    job = CellJob(options, run, reporter, summary, stop, DataCache(options.data_dir),
                  logs=CellLogs(options.log, reporter.warn))  # fmt: skip

    packs = PackTrainer(job, options.pack, len(plan)) if options.pack > 1 else None

    def train(index: int, planned: PlannedCell, held: locks.CellLock) -> bool:
        if packs is not None:  # held until its pack trains, with the rest of the pack
            return packs.add(index, planned, held)
        with held:
            return job.run(planned, (index, len(plan)))

    deferred: list[tuple[int, PlannedCell]] = []
    for index, planned in enumerate(plan, start=1):
        held = locks.try_lock(planned.path, stale_after=options.lock_stale_after)
        if isinstance(held, locks.LockHolder):
            deferred.append((index, planned))
            continue
        if not train(index, planned, held):
            return
    if packs is not None and not packs.flush():  # the last pack of the cells not held elsewhere
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
    if packs is not None:
        packs.flush()
