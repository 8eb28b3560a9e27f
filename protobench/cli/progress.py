"""Run progress: a live rich display on a terminal, plain log lines elsewhere (CI logs, files)."""

from __future__ import annotations

import sys
from typing import Any, TextIO


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
    """One line per epoch and per cell: quiet enough for a CI log."""

    def __init__(self, stream: TextIO | None = None, tag: str = "") -> None:
        self.stream = stream or sys.stdout
        self.tag = f"{tag} " if tag else ""
        self.prefix = ""
        self.epochs = 0

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start_run(self, suite: Any, total: int, skipped: int, device: str) -> None:
        self.say(f"suite {suite.name}: {total} cells, {skipped} already finished, on {device}")

    def start_cell(self, index: int, count: int, label: str) -> None:
        self.prefix = f"{self.tag}[{index}/{count}] {label}"

    # engine.Progress
    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        self.epochs = epochs

    def batch(self, epoch: int, index: int) -> None:
        pass

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        self.say(f"{self.prefix} epoch {epoch + 1}/{self.epochs} {describe_epoch(stats)}")

    def end_cell(self, record: dict[str, Any]) -> None:
        self.say(f"{self.prefix} {describe_record(record)}")

    def end_run(self, summary: Any) -> None:
        self.say(
            f"done: {summary.trained} trained, {summary.skipped} skipped, "
            f"{summary.not_applicable} n/a, {summary.failed} failed"
        )


class RichReporter(PlainReporter):
    """A live progress bar (cell i/n, epoch, batch, last loss and accuracy, images/s, ETA) on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.cells = None
        self.batches = None
        self.last = ""

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def start_run(self, suite: Any, total: int, skipped: int, device: str) -> None:
        super().start_run(suite, total, skipped, device)
        self.progress.start()
        self.cells = self.progress.add_task("cells", total=total - skipped, status="")

    def start_cell(self, index: int, count: int, label: str) -> None:
        super().start_cell(index, count, label)
        if self.batches is not None:
            self.progress.remove_task(self.batches)
        self.batches = self.progress.add_task(self.prefix, total=None, status="")
        self.last = ""

    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        super().start_cell_epochs(epochs, batches)
        self.progress.update(self.batches, total=epochs * batches, completed=0)

    def batch(self, epoch: int, index: int) -> None:
        self.progress.update(self.batches, advance=1, status=f"epoch {epoch + 1}/{self.epochs} {self.last}")

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        self.last = describe_epoch(stats)

    def end_cell(self, record: dict[str, Any]) -> None:
        self.progress.update(self.cells, advance=1)
        self.say(f"{self.prefix} {describe_record(record)}")

    def end_run(self, summary: Any) -> None:
        if self.batches is not None:
            self.progress.remove_task(self.batches)
        self.progress.stop()
        super().end_run(summary)


def make_reporter() -> PlainReporter:
    """Rich on an interactive terminal, plain lines otherwise."""
    return RichReporter() if sys.stdout.isatty() else PlainReporter()
