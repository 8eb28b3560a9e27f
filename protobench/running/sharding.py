"""One grid over many jobs: ``--shard I/N`` takes a deterministic 1/N of a suite's cells (docs/long-runs.md).

Every job of an array computes the same split from the whole grid (finished cells included, so the
split never shifts as cells finish): cells are dealt, most expensive first, to whichever shard has
the least estimated work so far (longest-processing-time first), ties broken by the cell's config
hash. Together with the per-cell locks, N jobs on one shared results directory train each cell once,
and ``report`` reads their union.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protobench.core.errors import UserError

#: What a Slurm job array task's --shard is made of: its index and the array's size.
SLURM_ARRAY_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/8"`` -> Shard(2, 8); anything else is a one-line UserError."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match and "/" in text and not all(side.strip() for side in text.split("/", 1)):
            # e.g. --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" outside a job array (docs/slurm/README.md)
            unset = [f"${name}" for name in SLURM_ARRAY_VARIABLES if not os.environ.get(name)]
            why = f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else "I or N is empty"
            raise UserError(f"--shard '{text}': {why}; run it as a Slurm job array task (sbatch --array=0-N) "
                            f"or give I/N, e.g. --shard 0/4")  # fmt: skip
        if not match:
            raise UserError(f"--shard '{text}' is not I/N; e.g. --shard 0/4 (shards 0..3 of 4)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise UserError(f"--shard {text}: use 0 <= I < N, e.g. --shard 0/{max(count, 1)}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def estimated_cost(config: dict[str, Any]) -> float:
    """Relative training cost of a cell: epochs x training images per epoch is the same per suite except
    for per-method recipes, so epochs, times a small growth with the embedding dimension (the head)."""
    return config["train"]["epochs"] * (1.0 + config["dim"] / 512)


def assign(cells: Sequence[Any], count: int) -> list[int]:
    """The shard of each cell (anything with ``config`` and ``digest``), in the order given."""
    order = sorted(range(len(cells)), key=lambda i: (-estimated_cost(cells[i].config), cells[i].digest))
    load = [0.0] * count
    shard_of = [0] * len(cells)
    for i in order:
        target = min(range(count), key=lambda k: (load[k], k))
        shard_of[i] = target
        load[target] += estimated_cost(cells[i].config)
    return shard_of


def take(cells: Sequence[Any], shard: Shard | None) -> list[Any]:
    """The cells of ``shard`` (all of them when None), in their grid order."""
    if shard is None:
        return list(cells)
    shard_of = assign(cells, shard.count)
    return [cell for cell, k in zip(cells, shard_of, strict=True) if k == shard.index]
