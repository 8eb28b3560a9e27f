"""Where training reports progress: the engine's ``Progress``, the runner's ``RunReporter`` (which
extends it with run- and cell-level events), and the rich-free implementations: silence (tests,
benchmarks) and one plain line per epoch and per cell (CI logs, files, worker processes).
The CLI adds a live rich display on a terminal (protobench/cli/live_display.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol, TextIO


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


class Progress(Protocol):
    """What the engine reports while it trains one cell."""

    def start_cell_epochs(self, epochs: int, batches: int) -> None: ...

    def batch(self, epoch: int, index: int) -> None: ...

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None: ...


class RunReporter(Progress, Protocol):
    """What the runner reports around the engine's events: the run, and each cell's start and record."""

    def start_run(self, suite: str, total: int, skipped: int, device: str) -> None: ...

    def start_cell(self, index: int, count: int, label: str) -> None: ...

    def note(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def end_cell(self, record: dict[str, Any]) -> None: ...

    def end_run(self, summary: RunSummary) -> None: ...


class SilentProgress:
    """Reports nothing (tests, benchmarks)."""

    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        pass

    def batch(self, epoch: int, index: int) -> None:
        pass

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        pass


def describe_epoch(stats: dict[str, float]) -> str:
    """``loss 0.412 train 85.1% test 86.0% 5,123 img/s`` for one epoch's history row."""
    parts = [f"loss {stats['train_loss']:.3f}", f"train {stats['train_accuracy']:.1f}%"]
    if "val_accuracy" in stats:
        parts.append(f"val {stats['val_accuracy']:.1f}%")
    parts += [f"test {stats['test_accuracy']:.1f}%", f"{stats['images_per_second']:,.0f} img/s"]
    return " ".join(parts)


def describe_record(record: dict[str, Any]) -> str:
    """The one-line outcome of a finished cell."""
    if record["status"] == "ok":
        m = record["metrics"]
        return f"test {m['test_accuracy']:.2f}% in {record['timings']['wall_seconds']:.0f}s"
    return f"{record['status']}: {record.get('reason', '')}"


class PlainReporter:
    """A ``RunReporter`` writing one line per epoch and per cell: quiet enough for a CI log."""

    def __init__(self, stream: TextIO | None = None, tag: str = "") -> None:
        self.stream = stream or sys.stdout
        self.tag = f"{tag} " if tag else ""
        self.prefix = ""
        self.epochs = 0

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start_run(self, suite: str, total: int, skipped: int, device: str) -> None:
        self.say(f"suite {suite}: {total} cells, {skipped} already finished, on {device}")

    def start_cell(self, index: int, count: int, label: str) -> None:
        self.prefix = f"{self.tag}[{index}/{count}] {label}"

    def note(self, text: str) -> None:
        """A line about the run: a resumed, locked or stopped cell."""
        self.say(f"{self.tag}{text}")

    def warn(self, text: str) -> None:
        """A ``warning:`` line on stderr (a damaged checkpoint); the run goes on."""
        print(f"{self.tag}warning: {text}", file=sys.stderr, flush=True)

    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        self.epochs = epochs

    def batch(self, epoch: int, index: int) -> None:
        pass

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        self.say(f"{self.prefix} epoch {epoch + 1}/{self.epochs} {describe_epoch(stats)}")

    def end_cell(self, record: dict[str, Any]) -> None:
        self.say(f"{self.prefix} {describe_record(record)}")

    def end_run(self, summary: RunSummary) -> None:
        extra = "".join(
            f", {count} {what}"
            for count, what in (
                (summary.reused, "reused"),
                (summary.resumed, "resumed"),
                (summary.locked, "left locked"),
            )
            if count
        )
        self.say(
            f"done: {summary.trained} trained, {summary.skipped} skipped, "
            f"{summary.not_applicable} n/a, {summary.failed} failed{extra}"
        )
