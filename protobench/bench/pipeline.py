"""Benchmark: training images/s of the engine's data path against a DataLoader pipeline and the model alone.

The suite's backbone with the softmax head trains on the suite's real training images three ways
(docs/bench.md): **engine**, the engine's own code (``cell_loaders``' device-resident loader with the
suite's augmentation, ``build_learner``, ``step_function``, stepped as ``train_cell`` steps);
**dataloader**, as published research code does it (a torchvision-style dataset, per-image
``transforms.v2``, ``DataLoader`` workers, fp32, each batch copied to the device); **model only**, the
engine's step on one fixed device-resident batch (the bound). Paths take turns in interleaved rounds;
each round gives paired ratios engine/dataloader and engine/model-only, summarised by their median
and the distribution-free interval ``bench methods`` uses.

    protobench bench pipeline --device cpu --json
    protobench bench pipeline --suite cifar100 --device cuda --data-dir /data --rounds 9
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protobench.bench.methods import median_interval
from protobench.core.errors import UserError

PATHS = ("engine", "dataloader", "model_only")
#: The issue's goals for engine / other, per other path.
GOALS = {"dataloader": 1.0, "model_only": 0.9}
LABELS = {"engine": "engine (DeviceLoader + step)", "dataloader": "DataLoader + v2 transforms",
          "model_only": "model only (one fixed batch)"}  # fmt: skip
#: Untimed steps per path before round 1: on CUDA the graphed step's 3 eager steps, its capture, a replay.
FIRST_WARMUP = {"cuda": 5, "cpu": 2}


def default_workers() -> int:
    """The DataLoader's worker processes by default: as many as the CPU has, at most 4."""
    return min(4, os.cpu_count() or 1)


@dataclasses.dataclass
class Setting:
    """What all three paths train: the suite (with overrides), its softmax recipe, the data and where."""

    suite: Any
    recipe: Any
    data: Any
    dim: int
    device: Any
    precision: str
    workers: int


def prepare(suite_name: str, backbone: str | None, batch: int | None, dim: int | None, device_spec: str,
            data_dir: Path | None, workers: int) -> Setting:  # fmt: skip
    """Load the suite and its real data through the normal preparation, with the overrides applied."""
    from protobench.core.device import resolve_device, resolve_precision
    from protobench.data.prepare import prepare_cell_data
    from protobench.suite.definition import load_suite

    suite = load_suite(suite_name)
    if backbone is not None:
        suite = dataclasses.replace(suite, backbone=backbone, backbone_options={})
    recipe = suite.recipe_for("softmax")
    recipe = dataclasses.replace(recipe, batch_size=batch or recipe.batch_size)
    device = resolve_device(device_spec)
    data = prepare_cell_data(suite.data_settings, data_dir, None)
    if data.train is None:
        raise UserError(f"suite {suite.name}: {suite.dataset} streams from disk; the pipeline benchmark needs "
                        "an in-memory dataset (e.g. fashion-mnist, cifar100)")  # fmt: skip
    if len(data.train) < recipe.batch_size:
        raise UserError(f"--batch {recipe.batch_size} is larger than the {len(data.train)} training images")
    dim = dim or max(suite.dims)
    return Setting(suite, recipe, data, dim, device, resolve_precision(recipe.precision, device), workers)


class TrainingPath:
    """One way of training: ``run(steps)`` trains that many batches and returns the images seen."""

    def run(self, steps: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the path holds (worker processes); nothing by default."""


class EnginePath(TrainingPath):
    """The engine's loader, learner and step function, stepped as ``train_cell`` steps them."""

    def __init__(self, s: Setting) -> None:
        import numpy as np
        import torch

        from protobench.engine.loop import build_learner, cell_loaders
        from protobench.engine.step import step_function
        from protobench.running.grid import spec_for

        self.setting = s
        self.learner = build_learner(spec_for(s.suite, "softmax", s.dim, precision=s.precision), s.data, s.device)
        self.loader = cell_loaders(s.recipe, s.data, s.device, 0)[0]
        self.step_fn = step_function(self.learner, s.device, cuda_graphs=True)
        self.mixing = np.random.default_rng(0)
        self.steps_per_epoch = len(self.loader)
        self.step = 0
        self.loss_sum = torch.zeros((), device=s.device)
        self.correct = torch.zeros((), device=s.device)
        self.batches = self._batches()

    def _batches(self) -> Iterator[Any]:
        for epoch in itertools.count():
            self.loader.set_epoch(epoch)
            yield from self.loader

    def run(self, steps: int) -> int:
        """Train ``steps`` batches; returns the number of images."""
        from protobench.engine.loop import lr_factor
        from protobench.engine.step import Mixup

        recipe, images_seen = self.setting.recipe, 0
        for _ in range(steps):
            images, labels = next(self.batches)
            for group in self.learner.optimizer.param_groups:
                group["lr"] = recipe.lr * lr_factor(self.step, self.steps_per_epoch, recipe)
            mix = Mixup.draw_step(self.mixing, recipe, images.shape, self.setting.device)
            loss, correct = self.step_fn(images, labels, mix)
            self.loss_sum += loss * labels.shape[0]
            self.correct += correct
            self.step += 1
            images_seen += labels.shape[0]
        return images_seen


class UInt8Images:
    """A torchvision-style dataset over uint8 C x H x W tensors: (transform(image), label) per index."""

    def __init__(self, images: Any, labels: Any, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.images[index]), self.labels[index]


def research_transform(recipe: Any, mean: tuple[float, ...], std: tuple[float, ...], size: tuple[int, int]) -> Any:
    """Per-image transforms as research code writes them: crop with padding, flip, float in [0, 1], normalise."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = []
    if recipe.crop_padding:
        steps.append(v2.RandomCrop(size, padding=recipe.crop_padding))
    if recipe.flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class DataLoaderPath(TrainingPath):
    """The same backbone, head and optimiser fed by ``torch.utils.data.DataLoader``, fp32, eager."""

    def __init__(self, s: Setting) -> None:
        import torch
        from torch.utils.data import DataLoader

        from protobench.engine.loop import build_learner
        from protobench.running.grid import spec_for

        self.device = s.device
        self.learner = build_learner(spec_for(s.suite, "softmax", s.dim, precision="fp32"), s.data, s.device)
        self.learner.backbone.to(memory_format=torch.contiguous_format)  # plain NCHW, as research code has it
        train = s.data.train
        transform = research_transform(s.recipe, s.data.dataset.mean, s.data.dataset.std, tuple(train.images.shape[2:]))
        self.pin = s.device.type == "cuda"
        self.loader: Any = DataLoader(
            UInt8Images(train.images, train.labels, transform), batch_size=s.recipe.batch_size, shuffle=True,
            num_workers=s.workers, pin_memory=self.pin, drop_last=True, persistent_workers=s.workers > 0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        self.batches = self._batches()

    def _batches(self) -> Iterator[Any]:
        while True:
            yield from self.loader

    def run(self, steps: int) -> int:
        """Train ``steps`` batches; returns the number of images."""
        backbone, method, optimizer = self.learner.backbone, self.learner.method, self.learner.optimizer
        images_seen = 0
        for _ in range(steps):
            images, labels = next(self.batches)
            images = images.to(self.device, non_blocking=self.pin)
            labels = labels.to(self.device, non_blocking=self.pin)
            loss = method.loss(method(backbone(images)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images_seen += labels.shape[0]
        return images_seen

    def close(self) -> None:
        """Stop the worker processes."""
        self.batches.close()
        self.loader = None


class ModelOnlyPath(TrainingPath):
    """The engine's step function on one fixed, device-resident batch (the bound)."""

    def __init__(self, s: Setting) -> None:
        import numpy as np

        from protobench.engine.loop import build_learner, cell_loaders
        from protobench.engine.step import Mixup, step_function
        from protobench.running.grid import spec_for

        self.learner = build_learner(spec_for(s.suite, "softmax", s.dim, precision=s.precision), s.data, s.device)
        self.step_fn = step_function(self.learner, s.device, cuda_graphs=True)
        loader = cell_loaders(s.recipe, s.data, s.device, 0)[0]
        loader.set_epoch(0)
        images, labels = next(iter(loader))
        self.batch = (images.clone(), labels.clone())
        self.mix = Mixup.draw_step(np.random.default_rng(0), s.recipe, images.shape, s.device)

    def run(self, steps: int) -> int:
        """Train ``steps`` times on the fixed batch; returns the number of images."""
        for _ in range(steps):
            self.step_fn(*self.batch, self.mix)
        return steps * int(self.batch[1].shape[0])


def turn_warmup(workers: int) -> int:
    """Untimed steps before each timed turn: enough to drain a DataLoader's prefetch queue (2 per worker)."""
    return max(5, 2 * workers + 2)


def measure(s: Setting, rounds: int, steps: int, warmup: int | None = None) -> dict[str, list[float]]:
    """images/s of each path per round, interleaved, the order rotating by one path a round; each turn
    first runs ``warmup`` untimed steps (default ``turn_warmup``)."""
    from protobench.core.device import seed_everything, synchronize

    seed_everything(0)
    warmup = turn_warmup(s.workers) if warmup is None else warmup
    paths = {"engine": EnginePath(s), "dataloader": DataLoaderPath(s), "model_only": ModelOnlyPath(s)}
    try:
        for path in paths.values():
            path.run(FIRST_WARMUP.get(s.device.type, 2))
        speeds: dict[str, list[float]] = {name: [] for name in PATHS}
        for round_index in range(rounds):
            turn = round_index % len(PATHS)
            for name in PATHS[turn:] + PATHS[:turn]:
                paths[name].run(warmup)
                synchronize(s.device)
                start = time.perf_counter()
                images = paths[name].run(steps)
                synchronize(s.device)
                speeds[name].append(images / (time.perf_counter() - start))
            line = ", ".join(f"{name} {speeds[name][-1]:,.0f}" for name in PATHS)
            print(f"round {round_index + 1}/{rounds}: {line} images/s", file=sys.stderr, flush=True)
    finally:
        for path in paths.values():
            path.close()
    return speeds


def verdict(low: float, high: float, goal: float) -> str:
    """'ok' when the whole interval meets the goal, 'SLOWER' when none of it does, else 'undecided'."""
    if low >= goal:
        return "ok"
    return "SLOWER" if high < goal else "undecided"


def summarise(speeds: dict[str, list[float]]) -> dict[str, Any]:
    """Median images/s per path and, against each other path, the median paired ratio with its interval."""
    summary: dict[str, Any] = {f"{name}_images_per_s": statistics.median(speeds[name]) for name in PATHS}
    for other, goal in GOALS.items():
        paired = [engine / value for engine, value in zip(speeds["engine"], speeds[other], strict=True)]
        low, high, coverage = median_interval(paired)
        summary[f"ratio_engine_vs_{other}"] = {
            "median": statistics.median(paired), "low": low, "high": high, "coverage": coverage,
            "goal": goal, "verdict": verdict(low, high, goal), "per_round": paired,
        }  # fmt: skip
    return summary


def benchmark(suite: str = "fashion-mnist", *, backbone: str | None = None, batch: int | None = None,
              dim: int | None = None, device: str = "auto", rounds: int = 5, steps: int = 50,
              workers: int | None = None, threads: int | None = None, warmup: int | None = None,
              data_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run the benchmark and return its JSON-ready result (what ``--json`` prints)."""
    import torch

    from protobench.core.device import device_name

    workers = default_workers() if workers is None else workers
    for flag, value, least in (("--rounds", rounds, 1), ("--steps", steps, 1), ("--workers", workers, 0),
                               ("--batch", batch, 1), ("--dim", dim, 2), ("--threads", threads, 1),
                               ("--warmup", warmup, 0)):  # fmt: skip
        if value is not None and value < least:
            raise UserError(f"{flag} is {value}; use {flag} >= {least}")
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder; create it or point it at your datasets")
    before = torch.get_num_threads()
    if threads is not None:  # this process's intra-op threads; DataLoader workers run one each anyway
        torch.set_num_threads(threads)
    try:
        s = prepare(suite, backbone, batch, dim, device, data_dir, workers)
        speeds = measure(s, rounds, steps, warmup)
        name, used = device_name(s.device), torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return {
        **summarise(speeds),
        "suite": s.suite.name, "backbone": s.suite.backbone, "backbone_options": dict(s.suite.backbone_options),
        "dim": s.dim, "batch": s.recipe.batch_size, "device": str(s.device), "device_name": name,
        "precision": s.precision, "threads": used, "rounds": rounds, "steps": steps, "workers": workers,
        "warmup_steps_per_turn": turn_warmup(workers) if warmup is None else warmup,
        "train_images": len(s.data.train), "data_source": s.data.source, "torch": torch.__version__,
        "per_round_images_per_s": speeds,
    }  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    """The result as a rich table (wide enough to stay on one line per row when piped)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    coverage = result["ratio_engine_vs_dataloader"]["coverage"]
    title = (f"training images/s: suite {result['suite']} ({result['backbone']}, d={result['dim']}), "
             f"batch {result['batch']}, {result['device_name']}, {result['precision']}; {result['rounds']} "
             f"interleaved rounds of {result['steps']} steps; torch {result['torch']}")  # fmt: skip
    table = Table(title=title, title_justify="left")
    for column in ("path", "images/s", "rounds min-max", "engine / this", f"{coverage:.1%} interval", "goal", ""):
        table.add_column(column, justify="left" if column in ("path", "") else "right")
    for name in PATHS:
        values = result["per_round_images_per_s"][name]
        row = [LABELS[name], f"{result[f'{name}_images_per_s']:,.0f}", f"{min(values):,.0f}-{max(values):,.0f}"]
        if name == "engine":
            row += ["", "", "", ""]
        else:
            ratio = result[f"ratio_engine_vs_{name}"]
            row += [f"{ratio['median']:.3f}", f"{ratio['low']:.3f}-{ratio['high']:.3f}", f">= {ratio['goal']:.2f}",
                    ratio["verdict"]]  # fmt: skip
        table.add_row(*row)
    console.print(table)
    console.print(f"DataLoader: {result['workers']} worker processes; engine / this: median of the per-round "
                  "ratios, interval from their order statistics (docs/bench.md)")  # fmt: skip


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error:`` line (a UserError), as every protobench command's are."""

    def error(self, message: str) -> Any:
        raise UserError(f"{message}; see {self.prog} --help")


def run(argv: list[str] | None = None) -> None:
    """Parse the options, measure and print the table (or the JSON)."""
    parser = ArgumentParser(prog="protobench bench pipeline", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--suite", default="fashion-mnist", help="suite whose data, backbone, batch and recipe")
    parser.add_argument("--backbone", default=None, help="another registered backbone (default: the suite's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the suite's)")
    parser.add_argument("--dim", type=int, default=None, help="embedding dimension (default: the suite's largest)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds, each a paired ratio")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per path and round")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: min(4, CPUs))")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps a turn (default: 2 workers + 2, >= 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of this process (default: torch's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the suite's dataset is")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = benchmark(args.suite, backbone=args.backbone, batch=args.batch, dim=args.dim, device=args.device,
                       rounds=args.rounds, steps=args.steps, workers=args.workers, threads=args.threads,
                       warmup=args.warmup, data_dir=args.data_dir)  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


if __name__ == "__main__":
    run()
