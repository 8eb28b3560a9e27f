"""Packed training: several cells trained together in one process, each with its own steps (docs/engine.md,
"Packed cells").

Every cell of a pack is set up as ``train_cell`` sets it up (seeded, then built), and then the cells take
turns: one optimiser step each, in order, until all are done. A cell runs exactly the kernels it runs alone
(on CUDA each on its own stream, so that the small kernels of several cells overlap), and the global random
number generators are swapped per cell around each step, so the draws that use them (mixup's partners) are
those of the cell alone: a packed cell's numbers are its solo numbers. One cell's error, including a NaN
loss, ends that cell alone; the others go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from protobench.core.device import restore_rng, rng_state
from protobench.core.progress import Progress, SilentProgress
from protobench.data.prepare import CellData
from protobench.engine.cell_state import Checkpointing
from protobench.engine.distributed import SINGLE_PROCESS
from protobench.engine.loop import CellOutcome, cell_steps, set_up_cell
from protobench.suite.spec import CellSpec


@dataclass
class PackMember:
    """One cell of a pack as the caller hands it over: what ``train_cell`` takes for it."""

    spec: CellSpec
    data: CellData
    progress: Progress = field(default_factory=SilentProgress)
    checkpointing: Checkpointing | None = None


@dataclass
class _Turn:
    """A member in training: its paused steps, its random number generators and its CUDA stream."""

    steps: Generator[None, None, CellOutcome] | None
    rng: dict[str, Any]
    stream: Any = None  # a torch.cuda.Stream on CUDA
    result: CellOutcome | BaseException | None = None


def train_pack(
    members: list[PackMember], *, device: torch.device, cuda_graphs: bool = True
) -> list[CellOutcome | BaseException]:
    """Train ``members`` together; per member, in order, its outcome or the exception that ended it
    (``NotApplicable`` from its set-up, ``TrainingFailed``, or ``Interrupted`` after its checkpoint was saved
    when ``should_stop`` asked). A KeyboardInterrupt stops the whole pack."""
    turns = [_set_up(member, device, cuda_graphs) for member in members]
    active = [turn for turn in turns if turn.steps is not None]
    while active:
        for turn in list(active):
            if _advance(turn):
                active.remove(turn)
    return [turn.result for turn in turns]  # type: ignore[misc]


def _set_up(member: PackMember, device: torch.device, cuda_graphs: bool) -> _Turn:
    """Seed and build ``member`` as ``train_cell`` does; its generators' state right after, to train from."""
    try:
        cell = set_up_cell(member.spec, member.data, device, cuda_graphs, member.progress, member.checkpointing,
                           SINGLE_PROCESS)  # fmt: skip
    except Exception as error:  # NotApplicable, a bad option: this member's alone
        return _Turn(None, {}, result=error)
    stream = None
    if device.type == "cuda":  # its own stream, after the work that built it (its data, its model)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
    return _Turn(cell_steps(cell), rng_state(), stream)


def _advance(turn: _Turn) -> bool:
    """One step of ``turn``'s cell with its own generators (and stream); True when the cell is done."""
    assert turn.steps is not None
    restore_rng(turn.rng)
    try:
        with _on(turn.stream):
            next(turn.steps)
    except StopIteration as done:
        turn.result = done.value
    except KeyboardInterrupt:
        raise
    except Exception as error:  # TrainingFailed, Interrupted: the others go on
        turn.result = error
    else:
        turn.rng = rng_state()
        return False
    turn.steps = None
    if turn.stream is not None:  # what it left (its outcome's state) is read on the caller's stream
        torch.cuda.current_stream(turn.stream.device).wait_stream(turn.stream)
    return True


@contextlib.contextmanager
def _on(stream: Any) -> Iterator[None]:
    """Run the block on ``stream`` (a CUDA stream), or as it is without one."""
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):
        yield


__all__ = ["PackMember", "train_pack"]
