"""``run --pack N``: the runner's cells in packs of N, each pack trained together in one process
(protobench/engine/pack.py; docs/engine.md, "Packed cells").

A cell joins the pending pack once this process holds its lock; when N are pending (or the plan is through)
the pack trains. Each cell keeps its own life as ``CellJob`` runs it alone: skipped when finished elsewhere,
its checkpoint resumed, its record made, settled and written as soon as the pack is through, its lock
released then. A cell's failure or n/a is its own record; a stop request leaves every cell of the pack with
its checkpoint saved.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protobench.core.progress import SilentProgress
from protobench.running import locks
from protobench.running.cell_job import CellJob
from protobench.running.checkpoints import CellCheckpoints
from protobench.running.grid import PlannedCell

if TYPE_CHECKING:
    from protobench.engine.pack import PackMember


@dataclass
class _Started:
    """A cell of the pack, ready to train: its plan entry, label, record, checkpoints and data."""

    planned: PlannedCell
    position: tuple[int, int]  # (i, n) in this process's plan
    label: str
    record: dict[str, Any]
    checkpoints: CellCheckpoints
    member: PackMember


class PackTrainer:
    """Collects held cells into packs of ``size`` and trains each pack (``add``, then ``flush`` at the end)."""

    def __init__(self, job: CellJob, size: int, total: int) -> None:
        self.job, self.size, self.total = job, size, total
        self.pending: list[tuple[int, PlannedCell, locks.CellLock]] = []

    def add(self, index: int, planned: PlannedCell, held: locks.CellLock) -> bool:
        """Add the cell (``index`` of the plan, its lock held); train the pack when it is full. False when stopped."""
        self.pending.append((index, planned, held))
        return self.flush() if len(self.pending) >= self.size else True

    def flush(self) -> bool:
        """Train the pending cells together and write their records; False when stopped."""
        pending, self.pending = self.pending, []
        if not pending:
            return True
        with contextlib.ExitStack() as held:
            for _, _, lock in pending:
                held.enter_context(lock)
            started = [cell for index, planned, _ in pending if (cell := self.start(index, planned)) is not None]
            return self.train(started)

    def start(self, index: int, planned: PlannedCell) -> _Started | None:
        """What ``CellJob.run`` does before training: None when the cell needs no training here."""
        from protobench.engine.pack import PackMember

        job = self.job
        label = f"[{index}/{self.total}] {planned.cell.label()}"
        if job.finished_elsewhere(planned, label):
            return None
        checkpoints, loaded = job.load_checkpoint(planned, label)
        data, record = job.start_cell(planned, (index, self.total), loaded)
        member = PackMember(planned.spec, data, SilentProgress(), job.checkpointing(checkpoints, loaded))
        return _Started(planned, (index, self.total), label, record, checkpoints, member)

    def train(self, started: list[_Started]) -> bool:
        """Train the started cells as one pack, then settle and write each record; False when stopped."""
        from protobench.engine.pack import train_pack

        if not started:
            return True
        job, options = self.job, self.job.options
        if len(started) > 1:
            job.reporter.note(f"training {len(started)} cells together: {', '.join(s.label for s in started)}")
        outcomes = train_pack([s.member for s in started], device=options.device, cuda_graphs=options.cuda_graphs)
        go_on = True
        for cell, outcome in zip(started, outcomes, strict=True):
            if job.settle(cell.planned, cell.record, outcome, cell.checkpoints, cell.label):
                job.reporter.start_cell(*cell.position, cell.planned.cell.label())  # its end line names it
                job.write_record(cell.planned, cell.record, cell.checkpoints)
            else:
                go_on = False
        return go_on
