"""Live training curves: ``run --log tensorboard[:DIR]`` and ``--log wandb[:PROJECT]`` (docs/live-curves.md).

The engine reports each epoch's history row to a ``Progress``; for a run with ``--log`` the runner hands
it ``CellLogs.progress(reporter)``, which passes every event on to the reporter and each epoch's row to
the loggers as well, so the engine knows no logger. Each process (a ``--jobs`` worker, torchrun's rank 0)
makes its own loggers from the ``LogSpec``s it is handed. Nothing here imports TensorBoard or wandb
before a cell's first epoch is logged, and a run without ``--log`` makes no logger at all. A logger that
raises warns once and is switched off for the rest of its process: it never fails a cell.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from protobench.core.errors import UserError
from protobench.core.progress import Progress

#: Each ``--log`` kind and the package it needs (also the name of protobench's extra that installs it).
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
#: The wandb project when ``--log wandb`` names none.
DEFAULT_PROJECT = "protobench"
#: The TensorBoard folder below the results store when ``--log tensorboard`` names none.
TENSORBOARD_FOLDER = "tensorboard"
# wandb refuses project names holding these characters; refusing them here says so before any cell trains.
PROJECT_FORBIDDEN = re.compile(r"[/\\#?%:]")


@dataclass(frozen=True)
class LogSpec:
    """One ``--log`` target: ``kind`` (tensorboard or wandb) and ``target`` (its folder, or wandb's project).
    Plain data, so ``RunOptions`` carries it to worker processes, each of which makes its own logger."""

    kind: str
    target: str

    def describe(self) -> str:
        """The line a run prints about where its curves go."""
        if self.kind == "tensorboard":
            return f"live curves: TensorBoard event files under {self.target} (tensorboard --logdir {self.target})"
        return f"live curves: wandb project {self.target} (WANDB_MODE=offline keeps them local for wandb sync)"


def parse_logs(values: Sequence[str], results_dir: Path) -> tuple[LogSpec, ...]:
    """The ``--log`` flags as specs, each checked before any cell trains: a known kind, a usable folder
    or project name, and its package installed (else a one-line UserError naming the extra)."""
    specs: list[LogSpec] = []
    for value in values:
        kind, colon, target = value.partition(":")
        if kind not in PACKAGES:
            raise UserError(f"--log '{value}' is unknown; use tensorboard, tensorboard:DIR, wandb or wandb:PROJECT")
        if colon and not target:
            what = "a folder, e.g. --log tensorboard:runs/tb" if kind == "tensorboard" else "a project name"
            raise UserError(f"--log {value}: nothing after ':'; give {what}, or drop the ':'")
        if kind == "tensorboard":
            folder = Path(target) if target else results_dir / TENSORBOARD_FOLDER
            check_folder(folder, value)
            target = str(folder)
        elif not target:
            target = DEFAULT_PROJECT
        elif PROJECT_FORBIDDEN.search(target):
            raise UserError(f"--log {value}: a wandb project name cannot hold / \\ # ? % or :; e.g. --log wandb:mine")
        if not installed(PACKAGES[kind]):
            raise UserError(
                f"--log {kind} needs the {PACKAGES[kind]} package, which is not installed; "
                f"pip install 'protobench[{kind}]'"
            )
        if (spec := LogSpec(kind, target)) not in specs:
            specs.append(spec)
    return tuple(specs)


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it (an import takes seconds)."""
    if package in sys.modules:
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


def check_folder(folder: Path, value: str) -> None:
    """A UserError when ``folder`` is a file or lies below one (it could never be made)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--log {value}: {folder} is a file; give a folder (it is created if missing)")
    above = next((p for p in folder.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"--log {value}: {above} is a file, not a folder; give a path inside a folder")


class EpochLogger(Protocol):
    """Where one process sends its cells' epochs: one run per cell, opened at the cell's first logged epoch."""

    def open(self, run: str, group: str, config: dict[str, Any], first_epoch: int) -> None:
        """Start the run ``run`` (``<suite>/<row>/<record stem>``) of suite ``group``; a resumed cell's first
        logged epoch is the one after its checkpoint."""

    def log(self, epoch: int, scalars: dict[str, float]) -> None:
        """One epoch's scalars at step ``epoch`` (1-based, as the record's history counts)."""

    def close(self) -> None:
        """End the open run."""


class TensorBoardLogger:
    """One TensorBoard run (a folder of event files) per cell under ``folder``, flushed every epoch so that
    a running ``tensorboard --logdir`` shows each epoch as it ends and a kill loses nothing logged."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: Any = None

    def open(self, run: str, group: str, config: dict[str, Any], first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier process logged in this run at this epoch and later,
        # so a resumed (or --restart) cell shows one curve, not the old tail under the new one.
        self.writer = SummaryWriter(log_dir=str(self.folder / run), purge_step=first_epoch)

    def log(self, epoch: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()


class WandbLogger:
    """One wandb run per cell in ``project``, named like the cell and grouped by suite, with the cell's config.
    wandb itself reads WANDB_MODE (``offline``: runs stay under ./wandb until ``wandb sync``) and its login."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.run: Any = None

    def open(self, run: str, group: str, config: dict[str, Any], first_epoch: int) -> None:
        import wandb

        self.run = wandb.init(project=self.project, name=run, group=group, config=config)

    def log(self, epoch: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=epoch)

    def close(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish()


def make_logger(spec: LogSpec) -> EpochLogger:
    """The logger of ``spec``; it imports its package only when it opens its first run."""
    return TensorBoardLogger(Path(spec.target)) if spec.kind == "tensorboard" else WandbLogger(spec.target)


@dataclass
class CellRun:
    """The cell whose epochs are being logged, and which loggers have opened its run."""

    run: str
    group: str
    config: dict[str, Any]
    opened: set[str]


class CellLogs:
    """One process's loggers: the cell being trained goes to each of them, epoch by epoch. A logger that
    raises is reported by ``warn`` once and switched off for the rest of the process; the cell goes on."""

    def __init__(
        self,
        specs: Sequence[LogSpec] = (),
        warn: Callable[[str], None] = lambda text: None,
        make: Callable[[LogSpec], EpochLogger] = make_logger,
    ) -> None:
        self.loggers = {spec.kind + ":" + spec.target: make(spec) for spec in specs}
        self.warn = warn
        self.cell: CellRun | None = None

    def start_cell(self, run: str, group: str, config: dict[str, Any]) -> None:
        """The next epochs are those of run ``run`` (see ``EpochLogger.open``)."""
        self.end_cell()
        self.cell = CellRun(run, group, config, set())

    def progress(self, inner: Progress) -> Progress:
        """What the engine reports to: ``inner`` itself without loggers, else ``inner`` and the loggers."""
        return LoggedProgress(inner, self) if self.loggers else inner

    def log_epoch(self, stats: dict[str, float]) -> None:
        """One epoch's history row: every key but ``epoch`` is a scalar at step ``epoch``."""
        cell = self.cell
        if cell is None:
            return
        epoch = int(stats["epoch"])
        scalars = {key: float(value) for key, value in stats.items() if key != "epoch"}
        for name, logger in list(self.loggers.items()):
            if name not in cell.opened and self.guarded(name, logger.open, cell.run, cell.group, cell.config, epoch):
                cell.opened.add(name)
            if name in cell.opened:
                self.guarded(name, logger.log, epoch, scalars)

    def end_cell(self) -> None:
        """Close the cell's open runs (after it finished, failed or was stopped)."""
        if self.cell is not None:
            for name in sorted(self.cell.opened & set(self.loggers)):
                self.guarded(name, self.loggers[name].close)
            self.cell = None

    def guarded(self, name: str, action: Callable[..., None], *args: Any) -> bool:
        """Run ``action(*args)``; True when it worked. An error warns and switches the logger off."""
        try:
            action(*args)
            return True
        except Exception as error:  # a logger never fails a cell, whatever it raises
            del self.loggers[name]
            if self.cell is not None:
                self.cell.opened.discard(name)
            text = " ".join(f"{type(error).__name__}: {error}".split())
            self.warn(f"--log {name.split(':')[0]} failed ({text}); it is off for the rest of this process")
            return False


class LoggedProgress:
    """The engine's ``Progress``: every event to ``inner`` (the run's reporter), each epoch's row also to ``logs``."""

    def __init__(self, inner: Progress, logs: CellLogs) -> None:
        self.inner = inner
        self.logs = logs

    def start_cell_epochs(self, epochs: int, batches: int) -> None:
        self.inner.start_cell_epochs(epochs, batches)

    def batch(self, epoch: int, index: int) -> None:
        self.inner.batch(epoch, index)

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        self.inner.end_epoch(epoch, stats)
        self.logs.log_epoch(stats)
