"""Data-parallel training across processes started by ``torchrun`` (docs/distributed.md).

``torchrun --nproc-per-node G -m protobench run SUITE`` starts G processes with RANK, WORLD_SIZE and
LOCAL_RANK set; ``from_environment`` joins them into one process group (NCCL on CUDA, gloo on the
CPU). Each cell is then trained by all of them together: every rank takes its slice of every global
batch (the suite's batch size is the global batch), gradients are averaged by DistributedDataParallel,
the heads' running statistics are summed over ranks before they update (``Method.sum_over_ranks``),
and evaluation counts are summed. Only rank 0 writes records, checkpoints and progress.

Nothing here is imported by a method or by the model code: the engine and the runner hand the
pieces over (a reducer function, a batch slice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from protobench.core.errors import UserError

if TYPE_CHECKING:
    from protobench.engine.step import Learner


#: Under torchrun the ranks agree on a stop request every this many steps (one tiny all-reduce each time).
STOP_POLL = 10


class SingleProcess:
    """The collective of one process: every operation is a no-op, so the engine's loop reads the same
    with and without torchrun (``DataParallel`` is the other collective)."""

    world_size = 1
    rank = 0
    is_main = True
    #: Whether training steps may be replayed from CUDA graphs (DDP's collectives are not captured).
    graphs_allowed = True
    #: Which rows of a global batch this process trains (None: all of them).
    part: Callable[[int], slice] | None = None

    def for_training(self, learner: Learner, device: torch.device, sync_batchnorm: bool = False) -> Learner:
        return learner

    def loss_scale(self, reduction: str) -> int:
        """What a rank's summed loss is multiplied by to be the global batch's (1 for one process)."""
        return 1

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def sum_count(self, count: int, device: torch.device) -> int:
        return count

    def any(self, flag: bool, device: torch.device) -> bool:
        return flag

    def agreed_stop(self, stop: bool, step: int, batch: int, device: torch.device) -> bool:
        """Whether to stop now: ``stop`` itself for one process."""
        return stop

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        pass

    def unsliced(self, loader: Any, make_whole: Callable[[], Any]) -> Any:
        """A loader over the whole split: ``loader`` itself for one process."""
        return loader

    def broadcast(self, value: Any) -> Any:
        return value


SINGLE_PROCESS = SingleProcess()


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group: ``rank`` of ``world_size`` (the collective of a
    torchrun process; ``SingleProcess`` is the one of a plain process)."""

    rank: int
    world_size: int
    local_rank: int
    graphs_allowed = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes records, checkpoints and progress."""
        return self.rank == 0

    @property
    def part(self) -> Callable[[int], slice]:
        return self.batch_slice

    def for_training(self, learner: Learner, device: torch.device, sync_batchnorm: bool = False) -> Learner:
        return for_training(learner, self, device, sync_batchnorm)

    def loss_scale(self, reduction: str) -> int:
        """A rank's summed loss is 1/W of the global batch's; a mean over the batch needs no scaling."""
        return self.world_size if reduction == "sum" else 1

    def sum_count(self, count: int, device: torch.device) -> int:
        """``count`` summed over the ranks."""
        total = torch.tensor(float(count), device=device)
        self.sum_(total)
        return int(total.item())

    def agreed_stop(self, stop: bool, step: int, batch: int, device: torch.device) -> bool:
        """Every rank stops at the same step: the ranks agree every STOP_POLL steps and at an epoch's start."""
        return self.any(stop, device) if step % STOP_POLL == 0 or batch == 0 else False

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        broadcast_buffers(module)

    def unsliced(self, loader: Any, make_whole: Callable[[], Any]) -> Any:
        """A loader over the whole split (each rank's own ``loader`` holds its slice of every batch)."""
        return make_whole()

    def batch_slice(self, size: int) -> slice:
        """This rank's rows of a global batch of ``size`` rows (contiguous, sizes differing by at most one)."""
        start = size * self.rank // self.world_size
        stop = size * (self.rank + 1) // self.world_size
        return slice(start, stop)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def environment_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not started by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start with torchrun") from None


def from_environment(device: torch.device) -> tuple[Collective, torch.device]:
    """Join the torchrun group, if this process is one of several: (the group, this rank's device).

    On CUDA each rank takes the GPU of its LOCAL_RANK (``--device cuda`` or ``auto``); on the CPU the
    ranks share the cores. A single process gets (``SINGLE_PROCESS``, ``device``) unchanged.
    """
    world = environment_world_size()
    if world <= 1:
        return SINGLE_PROCESS, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index not in (None, local):
            raise UserError(f"--device {device} with torchrun: use --device cuda (each rank takes cuda:LOCAL_RANK)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Long enough for rank 0 to wait on a cell another job holds while the others wait for it.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=6))
    return DataParallel(rank, world, local), device


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[tuple[Collective, torch.device]]:
    """``from_environment`` for the length of a ``with`` block: (the group, this rank's device), and the torchrun
    process group, when this process is one of several, destroyed as the block ends, however it ends."""
    collective, device = from_environment(device)
    try:
        yield collective, device
    finally:
        if collective.world_size > 1:
            dist.destroy_process_group()


def for_training(learner: Learner, group: DataParallel, device: torch.device, sync_batchnorm: bool = False) -> Learner:
    """The learner as each rank's training step uses it (the learner itself keeps the plain modules).

    The backbone runs under DistributedDataParallel (gradients reduced in buckets while backward runs,
    BatchNorm buffers broadcast from rank 0 each step); the head's trainable parameters (a classifier,
    a BatchNorm) get their gradients reduced by a hook; the head sums its bookkeeping statistics over
    the ranks (``Method.sum_over_ranks``). Gradients are averaged over ranks for a loss that is a mean
    over the batch and summed for one that is a sum (``Method.loss_reduction``), so either way they
    are the gradients of the whole global batch's loss, as in one process. With ``sync_batchnorm``
    (suite key, CUDA only) the backbone's BatchNorm layers normalise over the global batch.
    """
    if sync_batchnorm:
        if device.type != "cuda":
            raise UserError("sync_batchnorm: true needs CUDA (torch's SyncBatchNorm); drop it on the CPU")
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(learner.backbone)  # swaps the layers in place
    method = learner.method
    method.set_rank_sum(group.sum_)
    summed = method.loss_reduction == "sum"
    ids = [device.index] if device.type == "cuda" else None
    backbone = torch.nn.parallel.DistributedDataParallel(learner.backbone, device_ids=ids)
    if summed:
        backbone.register_comm_hook(None, _sum_bucket)
    for param in method.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(functools.partial(_reduce_grad, group, summed))
    return dataclasses.replace(learner, backbone=backbone)


def _sum_bucket(_state, bucket):  # type: ignore[no-untyped-def]
    """DDP communication hook: the bucket's gradients summed over ranks (DDP's own hook averages).

    Unannotated on purpose: DDP checks the annotations of a hook's arguments at run time, and with
    postponed evaluation they would be strings."""
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


def _reduce_grad(group: DataParallel, summed: bool, param: torch.Tensor) -> None:
    """Post-accumulate hook of a head parameter: its gradient summed (or averaged) over ranks."""
    if param.grad is not None:
        group.sum_(param.grad)
        if not summed:
            param.grad.div_(group.world_size)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's BatchNorm running statistics on every rank, so all evaluate one model. Only those:
    they are the one state each rank updates from its own rows; a head's own state (representatives,
    centroids, assignment) is kept identical by ``Method.sum_over_ranks`` and is not papered over here."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._NormBase):
            for buffer in layer.buffers(recurse=False):
                dist.broadcast(buffer, src=0)


#: What the engine and the runner are handed: one process, or one rank of a torchrun group.
Collective = SingleProcess | DataParallel
