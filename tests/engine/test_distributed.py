"""Data-parallel training (docs/distributed.md): two gloo ranks on the CPU train one cell together.

The ranks must hold the same model after every epoch (backbone weights, DL2PA's representatives and
assignment, DNC's centroids), and the cell must reach the accuracy of one process training the same
global batch on the same data. The backbone here normalises with GroupNorm: BatchNorm would normalise
each rank's half batch on its own (SyncBatchNorm needs CUDA), which is another model, not another
way of training the same one.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from protobench.backbones import BACKBONES
from protobench.core.progress import SilentProgress
from protobench.data.prepare import prepare_cell_data
from protobench.engine import loop as engine
from protobench.engine.distributed import SINGLE_PROCESS, DataParallel
from protobench.engine.loop import train_cell
from protobench.running.grid import spec_for
from protobench.suite.definition import load_suite
from tests.conftest import GPU_REHEARSAL, tiny_suite
from tests.data.fakefiles import write_fashion_mnist

METHODS = ("dl2pa", "dnc")


def groupnorm_cnn(in_channels: int, dim: int, width: int = 16) -> nn.Module:
    """A small CNN without BatchNorm: per-sample normalisation, so a batch split over ranks changes nothing."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, stride=4), nn.GroupNorm(4, width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, dim),
    )  # fmt: skip


@contextlib.contextmanager
def groupnorm_backbone() -> Iterator[None]:
    """The GroupNorm backbone registered for the duration (the shipped registry stays as it is)."""
    BACKBONES.register("test-groupnorm-cnn")(groupnorm_cnn)
    try:
        yield
    finally:
        BACKBONES._entries.pop("test-groupnorm-cnn")


BUILD_LEARNER = engine.build_learner
TRAIN = {"epochs": 5, "batch_size": 64, "eval_batch_size": 128, "lr": 0.05}
DIM = 8


class Snapshots(SilentProgress):
    """Builds the cell's learner through the engine (so it can see it) and keeps a copy of the backbone's
    parameters and the head's state after every epoch."""

    def __init__(self) -> None:
        self.learner = None
        self.epochs: list[dict[str, torch.Tensor]] = []

    def build_learner(self, *args, **kwargs):
        self.learner = BUILD_LEARNER(*args, **kwargs)
        return self.learner

    def end_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        state = {f"backbone.{k}": v.detach().cpu().clone() for k, v in self.learner.backbone.named_parameters()}
        state.update({f"method.{k}": v.detach().cpu().clone() for k, v in self.learner.method.state_dict().items()})
        self.epochs.append(state)


def train_rank(rank: int, world: int, init: str, out: str, data_dir: str, suite_path: str, device: str = "cpu") -> None:
    """One rank (world > 1) or the single process (world == 1): train each method on ``device``, save
    what it saw. On CUDA every rank shares the one GPU, over gloo: NCCL refuses two ranks on one GPU,
    and ``protobench run`` under torchrun gives each rank cuda:LOCAL_RANK (docs/distributed.md)."""
    torch.set_num_threads(1)
    group = SINGLE_PROCESS
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
        group = DataParallel(rank, world, rank)
    with groupnorm_backbone():
        suite = load_suite(suite_path)
        data = prepare_cell_data(suite.data_settings, Path(data_dir), None)
        saved = {method: train_method(suite, data, method, group, torch.device(device)) for method in METHODS}
    torch.save(saved, Path(out) / f"rank{rank}_of{world}.pt")
    if world > 1:
        dist.destroy_process_group()


def train_method(suite, data, method: str, group, device: torch.device) -> dict:
    """Train one cell of ``method`` (fp32); its per-epoch snapshots (on the CPU) and final test accuracy."""
    progress = Snapshots()
    engine.build_learner = progress.build_learner
    try:
        outcome = train_cell(spec_for(suite, method, DIM, 0, precision="fp32"), data, device=device,
                             progress=progress, collective=group)  # fmt: skip
    finally:
        engine.build_learner = BUILD_LEARNER
    return {"epochs": progress.epochs, "accuracy": outcome.metrics["test_accuracy"]}


@pytest.fixture(scope="module", params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def trained(request, tmp_path_factory):
    """Two gloo ranks and one process, on the CPU; and (marked ``gpu``) both ranks on one GPU."""
    device = "cpu" if request.param == "cpu" or GPU_REHEARSAL else "cuda:0"
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_fashion_mnist(tmp / "fmnist", n_train=1040, n_test=400)
    suite = tiny_suite(
        tmp / "ddp.yaml",
        methods=list(METHODS),
        dims=[DIM],
        train=TRAIN,
        backbone="test-groupnorm-cnn",
        backbone_options={"width": 16},
        method_recipes={"dl2pa": {"lr": 0.01}},  # its loss is a sum over the batch
    )
    mp.start_processes(train_rank, args=(2, str(tmp / "init"), str(tmp), str(data), str(suite), device), nprocs=2,
                       start_method="spawn")  # fmt: skip
    train_rank(0, 1, "", str(tmp), str(data), str(suite), device)
    return {name: torch.load(tmp / f"{name}.pt", weights_only=True) for name in ("rank0_of2", "rank1_of2", "rank0_of1")}


@pytest.mark.parametrize("method", METHODS)
def test_every_rank_holds_the_same_model_after_every_epoch(trained, method):
    first, second = trained["rank0_of2"][method]["epochs"], trained["rank1_of2"][method]["epochs"]
    assert len(first) == len(second) == TRAIN["epochs"]
    for epoch, (a, b) in enumerate(zip(first, second, strict=True), start=1):
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert different == [], f"epoch {epoch}: {different}"
    kept = set(first[0])
    wanted = {"method.representatives", "method.assignment"} if method == "dl2pa" else {"method.centroids"}
    assert wanted <= kept and any(k.startswith("backbone.") for k in kept)
    # The state moved (so equality is not trivial): the last epoch differs from the first.
    assert any(not torch.equal(first[0][k], first[-1][k]) for k in wanted)


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_reach_the_accuracy_of_one_process_on_the_same_global_batch(trained, method):
    two = trained["rank0_of2"][method]["accuracy"]
    assert two == trained["rank1_of2"][method]["accuracy"]  # evaluation counts are summed over the ranks
    one = trained["rank0_of1"][method]["accuracy"]
    print(method, "two ranks", two, "one process", one)
    assert abs(two - one) <= 2.0, (two, one)
    assert one > 15  # both learned something (10 classes: chance is 10%)


def test_torchrun_writes_exactly_one_record(tmp_path, fmnist_dir):
    # `--` before `run`: torchrun's parser reads `--log` as an abbreviation of its own `--log-dir` otherwise
    suite = tiny_suite(tmp_path / "tr.yaml", methods=["dl2pa"], dims=[3], train={"epochs": 1, "batch_size": 32})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "protobench", "--", "run",
               str(suite), "--results", str(tmp_path / "res"), "--data-dir", str(fmnist_dir), "--device",
               "cpu", "--log", f"tensorboard:{tmp_path / 'tb'}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "res").rglob("*.json")]
    assert len(list((tmp_path / "tb").rglob("events.out.tfevents.*"))) == 1  # rank 0 alone logs the curves
    assert record["status"] == "ok" and record["world_size"] == 2 and record["cuda_graphs"] is False
    assert len(re.findall(r"done: \d+ trained", done.stdout)) == 1  # rank 0 reports for both
    assert done.stdout.count("live curves: TensorBoard") == 1


def test_joined_leaves_a_single_process_alone(monkeypatch):
    from protobench.engine import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: pytest.fail("no group to destroy"))
    with distributed.joined(torch.device("cpu")) as (collective, device):
        assert collective is SINGLE_PROCESS and device == torch.device("cpu")


def test_joined_destroys_the_group_however_the_block_ends(monkeypatch):
    from protobench.engine import distributed

    destroyed = []
    group = DataParallel(0, 2, 0)
    monkeypatch.setattr(distributed, "from_environment", lambda device: (group, device))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    with distributed.joined(torch.device("cpu")) as (collective, _):
        assert collective is group and destroyed == []
    assert destroyed == [True]
    with pytest.raises(KeyboardInterrupt), distributed.joined(torch.device("cpu")):
        raise KeyboardInterrupt
    assert destroyed == [True, True]
