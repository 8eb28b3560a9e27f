"""A cell's checkpoints on disk: its whole training state, so a killed run resumes (docs/long-runs.md).

The files live beside the cell's record, named after it: ``<record stem>.ckpt-<step>.pt``, where step
is the number of optimiser steps taken (zero-padded, so names sort by age). Each is written atomically
(a reader or a crash sees a whole file or none); the newest ``KEEP`` are kept. They are removed once
the record is written; ``--keep-checkpoints`` keeps the final one as ``<record stem>.pt``, the name the
record's ``checkpoint`` key gives. A checkpoint holds the config hash of its cell and is never used for
another; one that cannot be read is reported and the one before it is tried.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from protobench.core.paths import atomic_write

#: Bump when the layout of a checkpoint changes; older files are then not resumed from.
FORMAT = 1
#: Checkpoints kept per cell: the newest, and one to fall back on if the newest is damaged.
KEEP = 2


class CellCheckpoints:
    """The checkpoints of the cell whose record lives at ``record_path`` and whose config hashes to ``digest``."""

    def __init__(self, record_path: Path, digest: str, config: dict[str, Any]) -> None:
        self.folder = record_path.parent
        self.stem = record_path.stem
        self.digest = digest
        self.config = config

    def files(self) -> list[Path]:
        """This cell's checkpoint files, oldest first."""
        return sorted(self.folder.glob(f"{self.stem}.ckpt-*.pt"))

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state`` (engine.training_state) as the newest checkpoint and drop all but the newest KEEP."""
        step = int(state["loop"]["step"])
        path = self.folder / f"{self.stem}.ckpt-{step:09d}.pt"
        payload = {"format": FORMAT, "config_hash": self.digest, "config": self.config, **state}
        atomic_write(path, lambda f: torch.save(payload, f))
        for old in self.files()[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def load(self, device: torch.device, warn: Callable[[str], None]) -> tuple[dict[str, Any], Path] | None:
        """The newest usable checkpoint and its path, or None (the cell starts over).

        An unreadable file, one of another format or one made for another configuration gets one
        ``warn`` line each and the next older one is tried.
        """
        candidates = list(reversed(self.files()))
        for path in candidates:
            try:
                state = torch.load(path, map_location=device, weights_only=True)
            except Exception as error:  # truncated, corrupt, not a torch file
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                warn(f"checkpoint {path} is unreadable ({reason[:120]}); {self._next(path, candidates)}")
                continue
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                warn(f"checkpoint {path} has another format; {self._next(path, candidates)}")
                continue
            if state.get("config_hash") != self.digest:
                warn(
                    f"checkpoint {path} was made for another configuration (hash {str(state.get('config_hash'))[:10]}, "
                    f"this cell {self.digest[:10]}); not used, {self._next(path, candidates)}"
                )
                continue
            return state, path
        return None

    @staticmethod
    def _next(path: Path, candidates: list[Path]) -> str:
        """What happens after ``path`` is passed over: an older checkpoint is tried, or the cell starts over."""
        return "trying the previous one" if path != candidates[-1] else "the cell starts over"

    def discard(self) -> None:
        """Remove every checkpoint of the cell (its record is written, or --restart)."""
        for path in self.files():
            path.unlink(missing_ok=True)

    def keep_final(self) -> str | None:
        """Move the newest checkpoint to ``<record stem>.pt`` (--keep-checkpoints); its name, or None."""
        files = self.files()
        if not files:
            return None
        final = self.folder / f"{self.stem}.pt"
        files[-1].replace(final)
        return final.name


def describe_position(state: dict[str, Any], epochs: int) -> str:
    """``epoch 3/5, batch 120`` (inside an epoch) or ``the end of epoch 2/5`` for a checkpoint's state."""
    loop = state["loop"]
    if loop["batch"]:
        return f"epoch {loop['epoch'] + 1}/{epochs}, after batch {loop['batch']}"
    return f"the end of epoch {loop['epoch']}/{epochs}"
