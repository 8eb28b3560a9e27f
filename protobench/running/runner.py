"""Expand a suite into its grid, skip finished cells, train the rest and store one record per cell."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from protobench.core.device import device_name, torch_threads
from protobench.core.progress import PlainReporter, RunReporter, RunSummary
from protobench.engine.distributed import SINGLE_PROCESS, Collective
from protobench.methods import NotApplicable
from protobench.running import locks
from protobench.running.checkpoints import CellCheckpoints, describe_position
from protobench.running.grid import PlannedCell, plan_suite, planned_cells
from protobench.running.interrupts import StopOnSignal, signals_held
from protobench.running.loggers import CellLogs, LogSpec
from protobench.running.sharding import Shard
from protobench.store import records as results
from protobench.store.records import provenance
from protobench.suite.definition import Suite

if TYPE_CHECKING:
    from protobench.data.prepare import CellData
    from protobench.engine.loop import CellOutcome
    from protobench.suite.spec import CellSpec

#: A saved training state and the checkpoint file it came from (``CellCheckpoints.load``).
Loaded = tuple[dict[str, Any], Path]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How cells run: where the data is, on which (resolved) device, how they checkpoint (docs/long-runs.md),
    what they do about cells another process holds and about records made by older code."""

    data_dir: Path | None
    device: torch.device
    deterministic: bool = False
    keep_checkpoints: bool = False  # keep the final checkpoint beside the record as <record stem>.pt
    cuda_graphs: bool = True
    checkpoint_minutes: float = 10.0  # inside an epoch; every epoch's end is checkpointed anyway
    restart: bool = False  # discard unfinished cells' checkpoints instead of resuming them
    wait: bool = True  # wait for cells locked by another process (else skip them)
    reuse: bool = True  # copy a finished record of the same config and numerics from elsewhere in the store
    keep_stale: bool = False  # count records made by older numerics as finished (docs/engine.md)
    shard: Shard | None = None  # this job's part of the grid (--shard I/N)
    collective: Collective = SINGLE_PROCESS  # this process's rank under torchrun (docs/distributed.md)
    log: tuple[LogSpec, ...] = ()  # --log: live curves, each process its own loggers (docs/live-curves.md)
    lock_stale_after: float = locks.STALE_AFTER_S
    # torch threads of the run, split between --jobs workers; None keeps torch's own count. The CLI passes
    # the CPUs the process may use (device.usable_cpus, docs/slurm/README.md, "Threads") or --threads.
    threads: int | None = None


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


class DataCache:
    """Each imbalance ratio's prepared data, loaded once per process (the cells of one run share a dataset)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self.prepared: dict[float | None, CellData] = {}

    def of(self, spec: CellSpec) -> CellData:
        from protobench.data.prepare import DataSettings, prepare_cell_data

        if spec.imbalance_ratio not in self.prepared:
            settings = DataSettings(dataset=spec.dataset, dataset_options=dict(spec.dataset_options),
                                    val_size=spec.val_size, data_seed=spec.data_seed,
                                    imbalance_profile=spec.imbalance_profile, source=spec.data_source)  # fmt: skip
            self.prepared[spec.imbalance_ratio] = prepare_cell_data(settings, self.data_dir, spec.imbalance_ratio)
        return self.prepared[spec.imbalance_ratio]


def release_device_memory(device: torch.device) -> None:
    """Free what a failed cell left behind (after a CUDA out-of-memory error the next cell needs it)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_cells(
    plan: list[PlannedCell],
    options: RunOptions,
    run: dict[str, Any],
    reporter: RunReporter,
    summary: RunSummary,
    stop: StopOnSignal | None = None,
) -> None:
    """Train the planned cells one after another, writing each record as soon as it is finished.

    ``run`` is the provenance every record of this process shares (``results.provenance``). Each cell
    is trained under its lock (protobench/running/locks.py): a cell another process holds is put off until
    the others are done, then waited for (``options.wait``) or skipped. A cell that cannot run at its
    setting is recorded as n/a; one that raises is recorded as failed and the grid goes on; missing
    data (a UserError) stops the run before any cell claims to have failed; a stop request ends the
    run after the cell in training has saved its checkpoint.
    """
    job = CellJob(options, run, reporter, summary, stop, DataCache(options.data_dir),
                  logs=CellLogs(options.log, reporter.warn))  # fmt: skip

    def train(index: int, planned: PlannedCell, held: locks.CellLock) -> bool:
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


@dataclass
class CellJob:
    """What one process needs to train the cells it holds the locks of: the run's options and
    provenance, where it reports and counts, how it is stopped, its prepared data, and the
    degenerate-prototype warnings it gave already (each set is checked: sets depend on the seed)."""

    options: RunOptions
    provenance: dict[str, Any]
    reporter: RunReporter
    summary: RunSummary
    stop: StopOnSignal | None
    data: DataCache
    warned: set[str] = field(default_factory=set)
    logs: CellLogs = field(default_factory=CellLogs)  # --log's loggers (protobench/running/loggers.py)

    def run(self, planned: PlannedCell, position: tuple[int, int]) -> bool:
        """Train one cell whose lock this process holds, resuming its checkpoint (or copy a twin's
        record); False when stopped. ``position`` is the cell's (i, n) in this process's plan."""
        label = f"[{position[0]}/{position[1]}] {planned.cell.label()}"
        if self.finished_elsewhere(planned, label):
            return True
        checkpoints, loaded = self.load_checkpoint(planned, label)
        data, record = self.start_cell(planned, position, loaded)
        if not self.train(planned, data, record, checkpoints, loaded, label):
            return False
        self.write_record(planned, record, checkpoints)
        return True

    def finished_elsewhere(self, planned: PlannedCell, label: str) -> bool:
        """Whether another process finished the cell or a twin's record (same config and numerics) was copied."""
        options, reporter, summary = self.options, self.reporter, self.summary
        if results.is_finished(planned.path, keep_stale=options.keep_stale):  # another process finished it
            reporter.note(f"{label} finished by another process")
            summary.skipped += 1
            return True
        root = planned.path.parents[2]  # <store>/<suite>/<row>/<record>
        if options.reuse and (twin := results.find_twin(root, planned.digest, planned.path)) is not None:
            results.reuse(root, twin, planned.path, suite=planned.suite, column=planned.column, row=planned.cell.method)
            reporter.note(f"{label} reused {twin.relative_to(root).as_posix()} (the same config and numerics)")
            summary.reused += 1
            return True
        return False

    def load_checkpoint(self, planned: PlannedCell, label: str) -> tuple[CellCheckpoints, Loaded | None]:
        """The cell's checkpoints (discarded first with ``--restart``) and the saved state to resume, if any."""
        checkpoints = CellCheckpoints(planned.path, planned.digest, planned.config)
        if self.options.restart:
            checkpoints.discard()
        loaded = checkpoints.load(self.options.device, self.reporter.warn)
        if loaded is not None:
            where = describe_position(loaded[0], planned.spec.train.epochs)
            self.reporter.note(f"{label} resuming from {where} ({loaded[1].name})")
            self.summary.resumed += 1
        return checkpoints, loaded

    def start_cell(
        self, planned: PlannedCell, position: tuple[int, int], loaded: Loaded | None
    ) -> tuple[CellData, dict[str, Any]]:
        """Prepare the data, report the start, make the new record, and start the other ranks and the loggers."""
        cell, spec = planned.cell, planned.spec
        data = self.data.of(spec)
        warn_degenerate_prototypes(spec, cell.method, data.num_classes, self.reporter, self.warned)
        self.reporter.start_cell(*position, cell.label())
        record = results.new_record(suite=planned.suite, column=planned.column, spec=spec, digest=planned.digest,
                                    data=data.record_data(), provenance=self.provenance,
                                    row=cell.method)  # fmt: skip
        group = self.options.collective
        group.broadcast(("train", planned, str(loaded[1]) if loaded else None))  # the other ranks train it too
        root = planned.path.parents[2]  # <store>/<suite>/<row>/<record>
        self.logs.start_cell(planned.path.relative_to(root).with_suffix("").as_posix(), planned.suite, planned.config)
        return data, record

    def train(self, planned: PlannedCell, data: CellData, record: dict[str, Any], checkpoints: CellCheckpoints,
              loaded: Loaded | None, label: str) -> bool:  # fmt: skip
        """Train the cell into its record (ok, n/a or failed); False when stopped, its checkpoint saved."""
        from protobench.engine import loop as engine

        options, summary = self.options, self.summary
        checkpointing = engine.Checkpointing(
            save=checkpoints.save,
            every_seconds=options.checkpoint_minutes * 60,
            resume=loaded[0] if loaded else None,
            should_stop=self.stop.requested if self.stop else (lambda: False),
        )
        try:
            outcome = engine.train_cell(planned.spec, data, device=options.device, cuda_graphs=options.cuda_graphs,
                                        progress=self.logs.progress(self.reporter), checkpointing=checkpointing,
                                        collective=options.collective)  # fmt: skip
        except NotApplicable as reason:
            results.not_applicable(record, str(reason))
            summary.not_applicable += 1
        except engine.Interrupted as where:
            self.reporter.note(f"{label} {where}; checkpoint saved")
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
            self.complete(planned, record, outcome, checkpoints)
        finally:
            self.logs.end_cell()
        return True

    def complete(
        self, planned: PlannedCell, record: dict[str, Any], outcome: CellOutcome, checkpoints: CellCheckpoints
    ) -> None:
        """Save the cell's embeddings and (``keep_checkpoints``) its final checkpoint, then complete its record."""
        embeddings = (
            results.save_embeddings(results.embeddings_path(planned.path), outcome.embeddings)
            if outcome.embeddings is not None
            else None
        )
        # Kept before the record is written: a record on disk always has its checkpoint beside it.
        checkpoint = checkpoints.keep_final() if self.options.keep_checkpoints else None
        results.complete(record, outcome, checkpoint, embeddings)
        self.summary.trained += 1

    def write_record(self, planned: PlannedCell, record: dict[str, Any], checkpoints: CellCheckpoints) -> None:
        """Write the record, discard the checkpoints unless the cell failed, and report the cell's end."""
        results.write_record(planned.path, record)
        if record["status"] != "error":  # a failed cell is retried from its last checkpoint
            checkpoints.discard()
        self.reporter.end_cell(record)


def warn_degenerate_prototypes(spec: CellSpec, row: str, K: int, reporter: RunReporter, warned: set[str]) -> None:
    """Warn when the fixed prototypes of the cell ``spec`` (table row ``row``) are degenerate
    (protobench.prototypes.degeneracy), unless the same warning was given already (a seed-independent
    set, another imbalance ratio)."""
    from protobench.methods import prototype_request
    from protobench.prototypes import generate
    from protobench.prototypes.degeneracy import degeneracy_warning

    request = prototype_request(spec.method, spec.method_options)
    if request is None:
        return
    kind, params = request
    text = degeneracy_warning(generate(kind, K, spec.dim, spec.seed, **params), f"{row} ({kind} prototypes)")
    if text is not None and text not in warned:
        warned.add(text)
        reporter.warn(text)
