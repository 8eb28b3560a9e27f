"""The packed cells that ``bench pack`` times: each cell's own model and step, the HFTA-style fused model of
N cells (Wang et al., MLSys 2021), and the strategies that train N cells at once (docs/bench.md, "Packing
several cells into one process"). A throughput model: random resident inputs, nothing learnt."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MOMENTUM = 0.9
#: Per-cell learning rates are the shape's lr times these, in turn: packed cells need not share one
#: (a tuning grid's cells differ in lr), and the fused optimiser must honour each.
LR_SPREAD = (1.0, 0.5, 0.25)
#: Eager steps on a side stream before a step is captured as a CUDA graph (as protobench/engine/step.py does).
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
        """channels-last on CUDA, as the engine trains (protobench/engine/loop.py)."""
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
