"""One cell's life in a run, in the process that holds its lock: skip it when finished elsewhere (or copy a
twin's record), resume its checkpoint, make its record, train it (alone, or in a pack: protobench/running/packs.py),
settle the outcome into the record and write it (docs/long-runs.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from protobench.core.progress import RunReporter, RunSummary
from protobench.methods import NotApplicable
from protobench.running.checkpoints import CellCheckpoints, describe_position
from protobench.running.grid import PlannedCell
from protobench.running.interrupts import StopOnSignal
from protobench.running.loggers import CellLogs
from protobench.running.options import Loaded, RunOptions
from protobench.store import records as results

if TYPE_CHECKING:
    from protobench.data.prepare import CellData
    from protobench.engine.cell_state import Checkpointing
    from protobench.engine.loop import CellOutcome
    from protobench.suite.spec import CellSpec


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

        options = self.options
        try:
            result: CellOutcome | Exception = engine.train_cell(
                planned.spec, data, device=options.device, cuda_graphs=options.cuda_graphs,
                progress=self.logs.progress(self.reporter), checkpointing=self.checkpointing(checkpoints, loaded),
                collective=options.collective,
            )  # fmt: skip
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            result = error
        try:
            return self.settle(planned, record, result, checkpoints, label)
        finally:
            self.logs.end_cell()

    def checkpointing(self, checkpoints: CellCheckpoints, loaded: Loaded | None) -> Checkpointing:
        """How the engine saves the cell's state, how often, what it resumes and when it stops."""
        from protobench.engine.cell_state import Checkpointing

        return Checkpointing(save=checkpoints.save, every_seconds=self.options.checkpoint_minutes * 60,
                             resume=loaded[0] if loaded else None,
                             should_stop=self.stop.requested if self.stop else (lambda: False))  # fmt: skip

    def settle(self, planned: PlannedCell, record: dict[str, Any], result: CellOutcome | Exception,
               checkpoints: CellCheckpoints, label: str) -> bool:  # fmt: skip
        """Put what training gave, an outcome or the exception that ended it, into the record (ok, n/a or
        failed); False when it was stopped (its checkpoint saved, no record to write)."""
        from protobench.engine import loop as engine

        if isinstance(result, NotApplicable):
            results.not_applicable(record, str(result))
            self.summary.not_applicable += 1
        elif isinstance(result, engine.Interrupted):
            self.reporter.note(f"{label} {result}; checkpoint saved")
            return False
        elif isinstance(result, Exception):
            # A failed cell is recorded with its reason (and epoch, when it failed while training) and
            # the grid goes on; the error's frames hold the cell's tensors: drop them before the next cell.
            if isinstance(result, engine.TrainingFailed):
                results.failed(record, result.cause, epoch=result.epoch)
            else:
                results.failed(record, result)
            self.summary.failed += 1
            result.__traceback__ = None
            release_device_memory(self.options.device)
        else:
            self.complete(planned, record, result, checkpoints)
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
