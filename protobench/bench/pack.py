"""Benchmark: aggregate training images/s of N cells trained at once inside one process, per packing strategy.

A **throughput** benchmark: each cell is a model (one of protobench's backbones and a linear softmax
head) trained with cross-entropy and SGD (momentum 0.9, Nesterov, weight decay) on one batch of
random input tensors of the shape's size, resident on the device and reused every step. No data is
loaded and nothing is learnt; only the speed of the training step counts. Strategies
(docs/bench.md, "Packing several cells into one process"):

- ``sequential``: the N cells' steps one after another (what one process with N cells does today);
- ``streams``: each cell's step on its own CUDA stream (on the CPU: sequential, and the table says so);
- ``streams-graphs``: each cell's whole step captured once as a CUDA graph, replayed on its stream (CUDA);
- ``fused``: one stacked model, as HFTA (Wang et al., MLSys 2021) builds it: grouped convolutions,
  BatchNorm over the stacked channels, batched matmuls for the linear layers; one optimiser honouring
  each cell's learning rate;
- ``fused-graphs``: the fused step captured once as a CUDA graph (CUDA).

Each (shape, strategy, N) builds its cells, runs ``--warmup`` untimed steps, then ``--steps`` timed
steps with the device synchronised before each reading of the clock; the figure is the aggregate
N x batch x steps / seconds, and its ratio to sequential N = 1 of the same shape.

    protobench bench pack --device cpu --quick
    protobench bench pack --device cuda --json pack.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protobench.bench.pipeline import ArgumentParser
from protobench.errors import UserError, did_you_mean

MOMENTUM = 0.9
#: Per-cell learning rates are the shape's lr times these, in turn: packed cells need not share one
#: (a tuning grid's cells differ in lr), and the fused optimiser must honour each.
LR_SPREAD = (1.0, 0.5, 0.25)
DEFAULT_N = (1, 2, 4, 8, 16, 32)
QUICK_N = (1, 2)
#: Timed and untimed steps per (shape, strategy, N). The default GPU run (2 shapes, 5 strategies,
#: N = 1..32) is estimated at 3 to 6 minutes on one H100 (docs/bench.md).
DEFAULT_STEPS, DEFAULT_WARMUP = 50, 5
QUICK_STEPS, QUICK_WARMUP = 2, 1
#: Eager steps on a side stream before a step is captured as a CUDA graph (as protobench/step.py does).
GRAPH_WARMUP = 3


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one cell trains: a registered backbone with its options, the input and the head."""

    name: str
    backbone: str
    options: dict[str, Any]
    channels: int
    size: int
    classes: int
    dim: int
    lr: float
    weight_decay: float
    describe: str


SHAPES: dict[str, Shape] = {
    # suites/cifar100.yaml: HPN's ResNet-32, d = 50 as in gpu-check, lr 0.01, weight decay 1e-4.
    "resnet32-cifar": Shape("resnet32-cifar", "resnet32", {"widths": (16, 32, 64), "blocks": 5, "fc": True},
                            3, 32, 100, 50, 0.01, 1e-4, "ResNet-32, 3x32x32, 100 classes, d=50"),
    # suites/fashion-mnist.yaml (and fashion-mnist-tuned, which includes it): smallcnn width 64, depth 3,
    # patch 4; d = 16 as bench methods; lr 0.05, weight decay 5e-4 (suites/quickstart.yaml's recipe).
    "smallcnn-fmnist": Shape("smallcnn-fmnist", "smallcnn", {"width": 64, "depth": 3, "patch": 4},
                             1, 28, 10, 16, 0.05, 5e-4, "smallcnn (width 64, depth 3, patch 4), 1x28x28, "
                             "10 classes, d=16"),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Setting:
    """Where and how the cells of one shape train."""

    shape: Shape
    batch: int
    device: torch.device
    #: bf16 autocast of the backbone (CUDA); the head and the loss compute in float32 as in the engine.
    autocast: bool = False
    #: Parameters and inputs; float64 only in the tests' equality checks.
    dtype: torch.dtype = torch.float32
    seed: int = 0

    @property
    def memory_format(self) -> torch.memory_format:
        """channels-last on CUDA, as the engine trains (protobench/engine.py)."""
        return torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    def autocast_context(self) -> Any:
        """bf16 autocast without its weight cache (a CUDA graph must not keep one), or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False)


def cell_lrs(base: float, n: int) -> list[float]:
    """The N cells' learning rates."""
    return [base * LR_SPREAD[i % len(LR_SPREAD)] for i in range(n)]


def make_model(setting: Setting, index: int) -> tuple[nn.Module, nn.Linear]:
    """Cell ``index``'s backbone and head, initialised from its own seed, on the CPU in float32."""
    from protobench.backbones import create_backbone

    shape = setting.shape
    torch.manual_seed(setting.seed * 100_003 + index)
    backbone = create_backbone(shape.backbone, in_channels=shape.channels, dim=shape.dim, **shape.options)
    return backbone, nn.Linear(shape.dim, shape.classes)


def make_batch(setting: Setting, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell ``index``'s random images (B x C x H x W) and labels, on the CPU."""
    shape = setting.shape
    generator = torch.Generator().manual_seed(setting.seed * 100_003 + index)
    images = torch.randn(setting.batch, shape.channels, shape.size, shape.size, generator=generator,
                         dtype=setting.dtype)  # fmt: skip
    return images, torch.randint(shape.classes, (setting.batch,), generator=generator)


def to_device(module: nn.Module, setting: Setting) -> nn.Module:
    """``module`` on the setting's device, dtype and memory format."""
    return module.to(device=setting.device, dtype=setting.dtype, memory_format=setting.memory_format)


class Cell:
    """One cell: backbone and head, its own batch and its own SGD (foreach, as the engine's)."""

    def __init__(self, setting: Setting, index: int, lr: float) -> None:
        backbone, head = make_model(setting, index)
        self.setting = setting
        self.backbone, self.head = to_device(backbone, setting), to_device(head, setting)
        images, labels = make_batch(setting, index)
        self.images = images.to(setting.device).contiguous(memory_format=setting.memory_format)
        self.labels = labels.to(setting.device)
        params = [*self.backbone.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=True,
                                         weight_decay=setting.shape.weight_decay, foreach=True)  # fmt: skip

    def logits(self) -> torch.Tensor:
        """Forward: the backbone under the setting's autocast, the head in at least float32."""
        with self.setting.autocast_context():
            z = self.backbone(self.images)
        return self.head(z if z.dtype in (torch.float32, torch.float64) else z.float())

    def step(self) -> None:
        """One training step: fresh gradients, cross-entropy, backward, the SGD update."""
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.logits(), self.labels).backward()
        self.optimizer.step()


# ---------------------------------------------------------------- the fused (stacked) model, HFTA style


class StackedLinear(nn.Module):
    """N ``Linear(in, out)`` layers side by side: input B x (N*in), cell-major, output B x (N*out); one
    batched matmul (HFTA's fused linear layer, Wang et al., MLSys 2021)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # N x out x in
        self.bias = None if bias is None else nn.Parameter(bias)  # N x out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, out, inp = self.weight.shape
        batch = x.shape[0]
        per_cell = x.reshape(batch, n, inp).transpose(0, 1)  # N x B x in
        if self.bias is None:
            y = torch.bmm(per_cell, self.weight.transpose(1, 2))
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), per_cell, self.weight.transpose(1, 2))
        return y.transpose(0, 1).reshape(batch, n * out)


def fuse_layer(parts: Sequence[nn.Module]) -> nn.Module | None:
    """The N same-typed layers ``parts`` as one layer over cell-major stacked channels, or None for a
    type without its own parameters or buffers (ReLU, pooling, containers: they work on stacked input as is).

    Conv2d becomes a grouped convolution with N times the groups, so cell i's output channels see only
    cell i's input channels; BatchNorm keeps a mean and variance per stacked channel, i.e. each cell its
    own statistics over its own batch; Linear becomes ``StackedLinear``.
    """
    first, n = parts[0], len(parts)
    if any(type(part) is not type(first) for part in parts):
        raise TypeError(f"cannot fuse layers of different types: {sorted({type(p).__name__ for p in parts})}")
    with torch.no_grad():
        if isinstance(first, nn.Conv2d):
            conv = nn.Conv2d(n * first.in_channels, n * first.out_channels, first.kernel_size,
                             stride=first.stride, padding=first.padding, dilation=first.dilation,
                             groups=n * first.groups, bias=first.bias is not None,
                             padding_mode=first.padding_mode)  # fmt: skip
            conv.weight.copy_(torch.cat([part.weight for part in parts]))
            if conv.bias is not None:
                conv.bias.copy_(torch.cat([part.bias for part in parts]))
            return conv
        if isinstance(first, nn.modules.batchnorm._BatchNorm):
            norm = type(first)(n * first.num_features, eps=first.eps, momentum=first.momentum,
                               affine=first.affine, track_running_stats=first.track_running_stats)  # fmt: skip
            for name, tensor in [*norm.named_parameters(), *norm.named_buffers()]:
                if name != "num_batches_tracked":
                    tensor.copy_(torch.cat([getattr(part, name) for part in parts]))
                else:
                    tensor.copy_(first.num_batches_tracked)
            return norm
        if isinstance(first, nn.Linear):
            weight = torch.stack([part.weight for part in parts]).clone()
            bias = None if first.bias is None else torch.stack([part.bias for part in parts]).clone()
            return StackedLinear(weight, bias)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise TypeError(f"cannot fuse {type(first).__name__}: only Conv2d, BatchNorm and Linear hold state")
    return None


def fuse(models: Sequence[nn.Module]) -> nn.Module:
    """One module computing N same-architecture ``models`` at once on input whose channels stack the N
    cells' inputs (cell-major: cell i's C channels are channels i*C to (i+1)*C); its output stacks the
    N outputs the same way. HFTA's horizontal fusion (Wang et al., MLSys 2021)."""
    layer = fuse_layer(models)
    if layer is not None:  # the model is itself one layer (a head)
        return layer
    fused = copy.deepcopy(models[0])
    for name, _ in list(fused.named_modules()):
        if name:
            layer = fuse_layer([model.get_submodule(name) for model in models])
            if layer is not None:
                fused.set_submodule(name, layer)
    return fused


def per_cell_values(param: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    """A tensor like ``param`` holding ``values[i]`` in cell i's slice (its first dimension is N x rows)."""
    rows = param.shape[0] // len(values)
    column = torch.tensor(values, dtype=param.dtype, device=param.device).repeat_interleave(rows)
    return torch.empty_like(param).copy_(column.view(-1, *[1] * (param.dim() - 1)).expand_as(param))


class FusedCells:
    """N cells as one stacked model (``fuse``) on their N batches stacked along the channels.

    One SGD (momentum, Nesterov, foreach) over the stacked parameters with lr 1 and no weight decay of
    its own: before its step each gradient gets the weight decay added and is multiplied by a tensor
    holding each cell's learning rate in that cell's slice. SGD's momentum and Nesterov terms are
    linear in the gradient, so this is each cell's own SGD at its own lr (tests/bench/test_pack_bench.py
    checks it after two steps in float64).
    """

    def __init__(self, setting: Setting, lrs: Sequence[float]) -> None:
        models = [make_model(setting, i) for i in range(len(lrs))]
        self.setting, self.n = setting, len(lrs)
        self.backbone = to_device(fuse([backbone for backbone, _ in models]), setting)
        self.head = to_device(fuse([head for _, head in models]), setting)
        batches = [make_batch(setting, i) for i in range(self.n)]
        images = torch.cat([images for images, _ in batches], dim=1)  # B x N*C x H x W
        self.images = images.to(setting.device).contiguous(memory_format=setting.memory_format)
        self.labels = torch.stack([labels for _, labels in batches], dim=1).to(setting.device)  # B x N
        self.params = [*self.backbone.parameters(), *self.head.parameters()]
        self.lr_scale = [per_cell_values(p, lrs) for p in self.params]
        self.optimizer = torch.optim.SGD(self.params, lr=1.0, momentum=MOMENTUM, nesterov=True, weight_decay=0.0,
                                         foreach=True)  # fmt: skip

    def logits(self) -> torch.Tensor:
        """B x (N*K): cell i's logits in columns i*K to (i+1)*K."""
        with self.setting.autocast_context():
            z = self.backbone(self.images)
        return self.head(z if z.dtype in (torch.float32, torch.float64) else z.float())

    def loss(self) -> torch.Tensor:
        """The sum over cells of each cell's mean cross-entropy (so each cell's gradient is its own)."""
        logits = self.logits()
        batch, classes = logits.shape[0], self.setting.shape.classes
        total = F.cross_entropy(logits.reshape(batch * self.n, classes), self.labels.reshape(-1), reduction="sum")
        return total / batch

    def step(self) -> None:
        """One training step of all N cells."""
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            torch._foreach_add_(grads, self.params, alpha=self.setting.shape.weight_decay)
            torch._foreach_mul_(grads, self.lr_scale)
        self.optimizer.step()


# ---------------------------------------------------------------- strategies


class Unavailable(Exception):
    """A strategy that cannot run on this device; the message says why."""


@dataclasses.dataclass
class Packed:
    """N cells ready to train: ``step()`` trains each of them one step; ``note`` says how it ran."""

    step: Callable[[], None]
    note: str = ""
    #: What a graph replays into (cells, their parameters, gradients, inputs): held for as long as the
    #: replay may run, since the graph keeps only its addresses and freed memory would be reused.
    keeps: Any = None


#: A strategy: (setting, the N cells' learning rates) -> Packed.
Strategy = Callable[[Setting, Sequence[float]], Packed]


def capture(step: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``step`` recorded once as a CUDA graph after ``GRAPH_WARMUP`` eager calls on a side stream; returns
    its replay. The whole step is recorded, optimiser update included (its lr is fixed here), on static
    inputs, as docs/bench.md ("CUDA graphs") describes for the engine."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def on_streams(steps: Sequence[Callable[[], None]], device: torch.device) -> Callable[[], None]:
    """One call runs ``steps[i]`` on CUDA stream i, all after the work queued so far, and the current
    stream waits for all of them."""
    streams = [torch.cuda.Stream(device) for _ in steps]

    def step() -> None:
        main = torch.cuda.current_stream(device)
        for cell_step, stream in zip(steps, streams, strict=True):
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                cell_step()
        for stream in streams:
            main.wait_stream(stream)

    return step


def sequential(setting: Setting, lrs: Sequence[float]) -> Packed:
    """The baseline: each cell's step after the other's, on the current stream."""
    cells = [Cell(setting, i, lr) for i, lr in enumerate(lrs)]

    def step() -> None:
        for cell in cells:
            cell.step()

    return Packed(step)


def streams(setting: Setting, lrs: Sequence[float]) -> Packed:
    """Each cell's eager step on its own CUDA stream, so the GPU may run the cells' kernels side by side."""
    if setting.device.type != "cuda":
        return dataclasses.replace(sequential(setting, lrs), note="no CUDA streams on the CPU: ran as sequential")
    cells = [Cell(setting, i, lr) for i, lr in enumerate(lrs)]
    return Packed(on_streams([cell.step for cell in cells], setting.device))


def streams_graphs(setting: Setting, lrs: Sequence[float]) -> Packed:
    """Each cell's whole step captured as a CUDA graph, replayed on the cell's own stream."""
    if setting.device.type != "cuda":
        raise Unavailable("CUDA graphs exist only on CUDA")
    cells = [Cell(setting, i, lr) for i, lr in enumerate(lrs)]
    return Packed(on_streams([capture(cell.step, setting.device) for cell in cells], setting.device), keeps=cells)


def fused(setting: Setting, lrs: Sequence[float]) -> Packed:
    """All N cells as one stacked model (``FusedCells``), eager."""
    return Packed(FusedCells(setting, lrs).step)


def fused_graphs(setting: Setting, lrs: Sequence[float]) -> Packed:
    """The fused step captured as one CUDA graph."""
    if setting.device.type != "cuda":
        raise Unavailable("CUDA graphs exist only on CUDA")
    cells = FusedCells(setting, lrs)
    return Packed(capture(cells.step, setting.device), keeps=cells)


STRATEGIES: dict[str, Strategy] = {
    "sequential": sequential,
    "streams": streams,
    "streams-graphs": streams_graphs,
    "fused": fused,
    "fused-graphs": fused_graphs,
}


# ---------------------------------------------------------------- measuring


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (torch's own error, or cuDNN's or cuBLAS's)."""
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


@contextlib.contextmanager
def cudnn_autotuning(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest algorithm per convolution shape (the engine's default), during the body."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def time_steps(packed: Packed, device: torch.device, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` steps after ``warmup`` untimed ones, the device synchronised at both ends."""
    from protobench.device import synchronize

    for _ in range(warmup):
        packed.step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        packed.step()
    synchronize(device)
    return time.perf_counter() - start


def measure(setting: Setting, strategy: str, n: int, steps: int, warmup: int) -> dict[str, Any]:
    """One row: build N cells with ``strategy``, time them, free them. An out-of-memory error (or another
    device error) becomes the row's status, so a large N does not end the run."""
    row: dict[str, Any] = {"shape": setting.shape.name, "strategy": strategy, "n": n}
    packed: Packed | None = None
    try:
        packed = STRATEGIES[strategy](setting, cell_lrs(setting.shape.lr, n))
        seconds = time_steps(packed, setting.device, steps, warmup)
        row.update(status="ok", seconds=seconds, images_per_s=n * setting.batch * steps / seconds, note=packed.note)
    except Unavailable as reason:
        row.update(status="skipped", note=str(reason))
    except RuntimeError as error:  # torch.OutOfMemoryError is one
        if setting.device.type != "cuda":
            raise
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        row.update(status="out of memory" if is_out_of_memory(error) else "failed",
                   note=f"{type(error).__name__}: {first_line}")  # fmt: skip
    finally:
        del packed
        gc.collect()
        if setting.device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def measure_shape(setting: Setting, strategies: Sequence[str], ns: Sequence[int], steps: int,
                  warmup: int) -> tuple[list[dict[str, Any]], float | None]:  # fmt: skip
    """Every (strategy, N) row of one shape, each with its ratio to sequential N = 1 (measured anyway
    when not asked for), and that baseline's images/s (None when it did not run)."""
    baseline = None
    if "sequential" not in strategies or 1 not in ns:
        baseline = measure(setting, "sequential", 1, steps, warmup)
        progress(baseline)
    rows = []
    for strategy in strategies:
        for n in ns:
            rows.append(measure(setting, strategy, n, steps, warmup))
            progress(rows[-1])
            if (strategy, n) == ("sequential", 1):
                baseline = rows[-1]
    reference = baseline["images_per_s"] if baseline is not None and baseline["status"] == "ok" else None
    for row in rows:
        if row["status"] == "ok" and reference:
            row["ratio_to_sequential_n1"] = row["images_per_s"] / reference
    return rows, reference


def describe(setting: Setting, baseline: float | None) -> dict[str, Any]:
    """What the rows of one shape trained, for the JSON and the table's heading."""
    shape = setting.shape
    return {
        "backbone": shape.backbone, "backbone_options": dict(shape.options), "describe": shape.describe,
        "input": [shape.channels, shape.size, shape.size], "classes": shape.classes, "dim": shape.dim,
        "batch": setting.batch, "precision": "bf16 autocast" if setting.autocast else "fp32",
        "memory_format": "channels_last" if setting.device.type == "cuda" else "contiguous",
        "lrs": f"{shape.lr:g} x {', '.join(f'{f:g}' for f in LR_SPREAD)} in turn", "momentum": MOMENTUM,
        "nesterov": True, "weight_decay": shape.weight_decay, "baseline_images_per_s": baseline,
    }  # fmt: skip


def benchmark(
    *,
    shapes: Sequence[str],
    strategies: Sequence[str],
    ns: Sequence[int],
    device: str = "auto",
    steps: int = DEFAULT_STEPS,
    warmup: int = DEFAULT_WARMUP,
    batch: int = 128,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure every (shape, strategy, N) and return the JSON-ready result."""
    from protobench.device import device_name, resolve_device, torch_threads

    check_names("--shapes", shapes, SHAPES)
    check_names("--strategies", strategies, STRATEGIES)
    for flag, value, least in (("--steps", steps, 1), ("--warmup", warmup, 0), ("--batch", batch, 1),
                               ("--threads", threads, 1)):  # fmt: skip
        if value is not None and value < least:
            raise UserError(f"{flag} is {value}; use {flag} >= {least}")
    if not ns or min(ns) < 1:
        raise UserError(f"--n {','.join(map(str, ns))}: every N must be a whole number >= 1")
    where = resolve_device(device)
    rows: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    with torch_threads(threads), cudnn_autotuning(where):
        name, used_threads = device_name(where), torch.get_num_threads()
        for shape_name in shapes:
            setting = Setting(SHAPES[shape_name], batch, where, autocast=where.type == "cuda")
            shape_rows, baseline = measure_shape(setting, strategies, ns, steps, warmup)
            rows += shape_rows
            described[shape_name] = describe(setting, baseline)
    return {
        "benchmark": "pack", "device": str(where), "device_name": name, "threads": used_threads,
        "torch": torch.__version__, "steps": steps, "warmup": warmup, "n": list(ns),
        "strategies": list(strategies), "shapes": described, "rows": rows,
    }  # fmt: skip


def progress(row: dict[str, Any]) -> None:
    """One line on stderr per measurement, so a long run shows where it is."""
    figure = row["status"]
    if figure == "ok":
        figure = f"{row['images_per_s']:,.0f} images/s in {row['seconds']:.2f} s"
    print(f"{row['shape']} {row['strategy']} N={row['n']}: {figure}", file=sys.stderr, flush=True)


def check_names(flag: str, names: Sequence[str], allowed: dict[str, Any]) -> None:
    """Every name known, else a UserError naming the closest allowed one."""
    if not names:
        raise UserError(f"{flag} is empty; choose from {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise UserError(f"{flag}: unknown '{name}'{did_you_mean(name, allowed)}; choose from {', '.join(allowed)}")


def cell_text(row: dict[str, Any]) -> str:
    """A table cell: images/s and the ratio, or what happened instead."""
    if row["status"] != "ok":
        return row["status"]
    ratio = row.get("ratio_to_sequential_n1")
    return f"{row['images_per_s']:,.0f}" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def print_table(result: dict[str, Any]) -> None:
    """One rich table per shape: a row per strategy, a column per N; notes below it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    for shape_name, shape in result["shapes"].items():
        rows = [row for row in result["rows"] if row["shape"] == shape_name]
        baseline = shape["baseline_images_per_s"]
        reference = "not measured" if baseline is None else f"{baseline:,.0f} images/s"
        console.print(f"pack, {shape_name}: {shape['describe']}, batch {shape['batch']}, {shape['precision']}; "
                      f"{result['device_name']}; torch {result['torch']}", markup=False, highlight=False)  # fmt: skip
        console.print(f"aggregate training images/s of N cells in one process, {result['steps']} timed steps after "
                      f"{result['warmup']} warm-up; (x): ratio to sequential N=1 ({reference})", markup=False,
                      highlight=False)  # fmt: skip
        table = Table()
        table.add_column("strategy", no_wrap=True)
        for n in result["n"]:
            table.add_column(f"N={n}", justify="right", no_wrap=True)
        notes: list[str] = []
        for strategy in result["strategies"]:
            by_n = {row["n"]: row for row in rows if row["strategy"] == strategy}
            table.add_row(strategy, *(cell_text(by_n[n]) for n in result["n"]))
            for row in by_n.values():
                if row.get("note"):
                    said = row["note"] if row["status"] in ("ok", "skipped") else f"N={row['n']}, {row['note']}"
                    if f"{strategy}: {said}" not in notes:
                        notes.append(f"{strategy}: {said}")
        console.print(table)
        for note in notes:
            console.print(f"  {note}", markup=False, highlight=False)


def n_list(text: str) -> tuple[int, ...]:
    """An argparse type: ``--n`` values such as ``1,2,4,8`` (each a whole number >= 1, duplicates dropped)."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(f"'{part}' is not a whole number >= 1")
        if int(part) not in values:
            values.append(int(part))
    return tuple(values)


def name_list(text: str) -> list[str]:
    """An argparse type: comma-separated names."""
    return [part.strip() for part in text.split(",") if part.strip()]


def run(argv: list[str] | None = None) -> None:
    """Parse the options, measure, print the tables and write the JSON when asked."""
    parser = ArgumentParser(prog="protobench bench pack", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--n", type=n_list, default=None,
                        help=f"how many cells, comma-separated (default {','.join(map(str, DEFAULT_N))})")  # fmt: skip
    parser.add_argument("--strategies", type=name_list, default=list(STRATEGIES),
                        help=f"comma-separated, from {', '.join(STRATEGIES)} (default: all)")  # fmt: skip
    parser.add_argument("--shapes", type=name_list, default=list(SHAPES),
                        help=f"comma-separated, from {', '.join(SHAPES)} (default: both)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=None, help=f"timed steps (default {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=None, help=f"untimed steps first (default {DEFAULT_WARMUP})")
    parser.add_argument("--batch", type=int, default=128, help="images per cell and step (default 128)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of this process (default: torch's)")
    parser.add_argument("--quick", action="store_true",
                        help=f"N {','.join(map(str, QUICK_N))}, {QUICK_STEPS} steps after {QUICK_WARMUP} "
                        "(a smoke test that still prints figures)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.is_dir():
        raise UserError(f"--json {args.json} is a folder; give a file name, e.g. --json {args.json / 'pack.json'}")
    ns = args.n or (QUICK_N if args.quick else DEFAULT_N)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else DEFAULT_STEPS)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    result = benchmark(shapes=args.shapes, strategies=args.strategies, ns=ns, device=args.device, steps=steps,
                       warmup=warmup, batch=args.batch, threads=args.threads)  # fmt: skip
    result["quick"] = args.quick
    print_table(result)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as error:
            raise UserError(f"--json {args.json}: cannot write ({error.strerror}); give a path you can write") from None
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run()
