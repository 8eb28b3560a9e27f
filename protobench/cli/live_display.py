"""Run progress on a terminal: a live rich display; plain log lines elsewhere (protobench.core.progress)."""

from __future__ import annotations

import sys
from typing import Any

from protobench.core.progress import PlainReporter, describe_epoch, describe_record


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
