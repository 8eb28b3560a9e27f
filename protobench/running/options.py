"""How a run trains its cells (``RunOptions``): the device, checkpoints, locks, reuse, shards, the collective,
live loggers, threads and packing (docs/long-runs.md, docs/engine.md "Packed cells")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protobench.engine.distributed import SINGLE_PROCESS, Collective
from protobench.running import locks
from protobench.running.loggers import LogSpec
from protobench.running.sharding import Shard

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
    # --pack: how many cells train together in one process (docs/engine.md, "Packed cells"); 1 trains each alone.
    pack: int = 1
