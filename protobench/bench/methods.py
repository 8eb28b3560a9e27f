"""Benchmark: each method's training images/s relative to softmax, same backbone, batch and data, one run.

Every method trains through the real engine (``train_cell``) on the suite's real data; the figure is
the engine's own training throughput over every epoch but the first (which carries cuDNN autotuning
and, on CUDA, the step's graph capture); the GPU is synchronised at the start and end of each epoch
only, and evaluation is not timed. Methods are measured in interleaved rounds, so each round gives
a paired ratio (the method's images/s over softmax's in the same round) and slow drift of the machine
cancels in it. The table shows the median paired ratio and a confidence interval for it from the
order statistics of the paired ratios (95% or more from six rounds on; below that the min-max,
with its coverage), which assumes only that rounds are independent; the verdict is "ok" when the whole
interval meets the goal, "SLOWER" when none of it does and "undecided" otherwise (more rounds
narrow it). ``--paired-steps N`` alternates the methods every N steps instead of every cell.

Beside the timing it counts the kernels one training step runs (forward, backward, optimiser and
the head's bookkeeping; views, in-place view changes and allocations excluded), an exact figure:
when a small model leaves the GPU waiting on kernel launches, eager step time follows that count.
On CUDA the engine replays each step from a CUDA graph (``--no-cuda-graphs`` measures eager steps).

    python -m protobench.bench methods --suite quickstart --dim 16 --rounds 3 --device auto
    python -m protobench.bench methods --suite fashion-mnist --dim 16 --rounds 100 --paired-steps 20 --device cuda
    python -m protobench.bench methods --suite fashion-mnist --backbone resnet32 --kernels-only  # no timing
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import statistics
from pathlib import Path
from typing import Any

from protobench.bench.options import add_setting_options, keep_first_training_images
from protobench.core.errors import UserError

GOAL = 0.95  # every prototype method within 5% of softmax


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One method's training speed against softmax over interleaved rounds."""

    median: float  # images/s, median over rounds
    spread: float  # (max - min) / median of the rounds' images/s
    ratio: float  # median over rounds of (method / softmax in the same round)
    low: float  # confidence interval of the median ratio (see median_interval)
    high: float

    @property
    def verdict(self) -> str:
        """'ok' if the whole interval meets the goal, 'SLOWER' if none of it does, else 'undecided'."""
        if self.low >= GOAL:
            return "ok"
        return "SLOWER" if self.high < GOAL else "undecided"


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median of ``values``' distribution: (low, high, coverage).

    The k-th smallest and k-th largest of n independent values bracket the median with probability
    1 - 2 P(Binomial(n, 1/2) < k); k is the largest with at least ``confidence``. Below six values
    no pair reaches 95%, and the interval is their min and max, with its lower coverage.
    """
    n = len(values)
    k, coverage = order_statistic_rank(n, confidence)
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k], coverage


def order_statistic_rank(n: int, confidence: float = 0.95) -> tuple[int, float]:
    """(k, coverage) for ``median_interval`` of n values: the largest k whose k-th smallest and k-th
    largest bracket the median with probability >= ``confidence`` (k = 1 when none does), and that probability."""

    def coverage(k: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n

    k = 1
    while k < (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return k, coverage(k)


def compare_to_softmax(speeds: dict[str, list[float]]) -> dict[str, Comparison]:
    """Per method, its images/s per round (round i at index i, softmax among them) against softmax's."""
    base = speeds["softmax"]
    comparisons = {}
    for method, values in speeds.items():
        if len(values) != len(base) or not values:
            raise ValueError(f"{method}: {len(values)} rounds measured, softmax {len(base)}")
        median = statistics.median(values)
        paired = [value / softmax for value, softmax in zip(values, base, strict=True)]
        low, high, _ = median_interval(paired)
        comparisons[method] = Comparison(median, (max(values) - min(values)) / median, statistics.median(paired),
                                         low, high)  # fmt: skip
    return comparisons


#: Dispatched operations that launch no kernel, besides views and in-place view changes such as
#: ``squeeze_`` (``OpOverload.is_view`` and the ``inplace_view`` tag mark those).
_NO_KERNEL = {"empty", "empty_strided", "_record_function_enter_new", "_record_function_exit"}


def launches_kernel(func: Any) -> bool:
    """Whether a dispatched operation (an ``OpOverload``) runs a kernel rather than only changing metadata."""
    import torch

    metadata_only = func.is_view or torch.Tag.inplace_view in func.tags
    return not metadata_only and func.overloadpacket.__name__ not in _NO_KERNEL


def kernels_per_step(suite: Any, data: Any, method: str, dim: int, device: Any) -> int:
    """Kernel-running operations in one training step of ``method`` (the second step: the first
    creates the optimiser state), with mixup where the suite trains with it."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from protobench.core.device import resolve_precision
    from protobench.engine.loop import build_learner, cell_loaders
    from protobench.engine.step import Mixup, train_step
    from protobench.running.grid import spec_for

    class KernelCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.count += launches_kernel(func)
            return func(*args, **(kwargs or {}))

    learner = build_learner(spec_for(suite, method, dim, precision=resolve_precision(suite.train.precision, device)),
                            data, device)  # fmt: skip
    train_loader = cell_loaders(suite.train, data, device, 0)[0]
    train_loader.set_epoch(0)
    batches = iter(train_loader)
    train_step(learner, *next(batches))
    images, labels = next(batches)
    mix = None
    if suite.train.mixup_alpha > 0:  # the engine draws the weight and permutation outside the step
        mix = Mixup.from_lambda(0.7, torch.randperm(images.shape[0], device=images.device))
    with KernelCounter() as counter:
        train_step(learner, images, labels, mix)
    return counter.count


def measure(suite_name: str, dim: int, methods: list[str] | None, rounds: int, epochs: int, device_spec: str,
            data_dir: Path | None, train_subset: int | None, backbone: str | None = None,
            batch_size: int | None = None, cuda_graphs: bool = True, paired_steps: int | None = None,
            ) -> tuple[dict[str, list[float]], dict[str, int]]:  # fmt: skip
    """images/s of each method, ``rounds`` times, interleaved (whole cells, or blocks of ``paired_steps``
    steps); and kernels per step. No rounds: kernels only."""

    from protobench.core.device import resolve_device
    from protobench.data.prepare import prepare_cell_data
    from protobench.suite.definition import load_suite

    suite = load_suite(suite_name)
    names = methods or [m for m in suite.methods]
    if "softmax" not in names:
        names.insert(0, "softmax")
    suite = suite.with_overrides(methods=names, dims=[dim], epochs=epochs)
    suite = dataclasses.replace(suite, val_size=0)
    if backbone is not None:  # e.g. the paper's ResNet-32 on the suite's data
        suite = dataclasses.replace(suite, backbone=backbone, backbone_options={})
    if batch_size is not None:
        suite = dataclasses.replace(suite, train=dataclasses.replace(suite.train, batch_size=batch_size))
    device = resolve_device(device_spec)
    data = prepare_cell_data(suite.data_settings, data_dir, None)
    keep_first_training_images(data, train_subset)
    if rounds == 0:
        speeds = {m: [] for m in names}
    elif paired_steps:
        speeds = time_step_blocks(suite, data, names, dim, device, rounds, paired_steps, cuda_graphs)
    else:
        speeds = time_cells(suite, data, names, dim, device, rounds, cuda_graphs)
    kernels: dict[str, int] = {}
    for method in list(speeds):
        try:
            kernels[method] = kernels_per_step(suite, data, method, dim, device)
        except Exception as error:  # n/a at this dim (ETF; when timed, the timing has dropped it already)
            print(f"{method}: skipped ({type(error).__name__}: {error})")
            speeds.pop(method)
    return speeds, kernels


def time_cells(suite: Any, data: Any, names: list[str], dim: int, device: Any, rounds: int,
               cuda_graphs: bool) -> dict[str, list[float]]:  # fmt: skip
    """images/s of each method's whole training cell (``train_cell``, every epoch but the first), per round."""
    from protobench.core.device import resolve_precision
    from protobench.engine.loop import train_cell
    from protobench.running.grid import spec_for

    precision = resolve_precision(suite.train.precision, device)
    speeds: dict[str, list[float]] = {m: [] for m in names}
    for round_index in range(rounds):
        for method in names:
            if method not in speeds:
                continue
            try:
                spec = spec_for(suite, method, dim, round_index, precision=precision)
                outcome = train_cell(spec, data, device=device, cuda_graphs=cuda_graphs)
            except Exception as error:  # n/a at this dim (ETF) or a failure: say so and go on
                print(f"{method}: skipped ({type(error).__name__}: {error})")
                speeds.pop(method)
                continue
            timed = outcome.history[1:] or outcome.history
            # Epochs are equally long: the harmonic mean of their rates is images over seconds.
            speeds[method].append(statistics.harmonic_mean([row["images_per_second"] for row in timed]))
            # A line per measurement as it lands, so a run cut short still shows what it measured.
            print(f"round {round_index + 1} {method}: {speeds[method][-1]:,.0f} images/s", flush=True)
    return speeds


def time_step_blocks(suite: Any, data: Any, names: list[str], dim: int, device: Any, rounds: int, block: int,
                     cuda_graphs: bool) -> dict[str, list[float]]:  # fmt: skip
    """images/s of each method's training step: each round, every method in turn runs the same ``block`` batches.

    All learners live side by side, so the methods alternate within seconds (minutes apart with
    whole cells) and the machine's drift barely reaches the paired ratios. The turn order rotates
    by one method per round. Timed is the step alone (the engine's step function, graph-replayed
    where the engine would replay it): loading, evaluation and once-an-epoch work such as DL2PA's
    matching are left out. Each method first runs two untimed blocks, five steps at least (autotuning,
    graph capture).
    """
    import time

    import numpy as np

    from protobench.core.device import resolve_precision, seed_everything, synchronize
    from protobench.engine.loop import build_learner, cell_loaders
    from protobench.engine.step import Mixup, step_function
    from protobench.running.grid import spec_for

    seed_everything(0)
    precision = resolve_precision(suite.train.precision, device)
    steps = {}
    for method in names:
        try:
            learner = build_learner(spec_for(suite, method, dim, precision=precision), data, device)
            steps[method] = step_function(learner, device, cuda_graphs)
        except Exception as error:  # n/a at this dim (ETF): say so and go on
            print(f"{method}: skipped ({type(error).__name__}: {error})")
    loader = cell_loaders(suite.train, data, device, 0)[0]
    mixing = np.random.default_rng(0)

    def batches() -> Any:
        for epoch in itertools.count():
            loader.set_epoch(epoch)
            for images, labels in loader:  # the same mixup for every method
                yield images, labels, Mixup.draw_step(mixing, suite.train, images.shape, device)

    stream = batches()
    warmup = [next(stream) for _ in range(block)]
    for step in steps.values():
        # At least two blocks and five steps: the graphed step's three eager warm-up steps, its capture, a replay.
        for index in range(max(2 * block, 5)):
            step(*warmup[index % block])
    speeds: dict[str, list[float]] = {m: [] for m in steps}
    order = list(steps)
    for round_index in range(rounds):
        work = [next(stream) for _ in range(block)]
        images_in_block = sum(labels.shape[0] for _, labels, _ in work)
        turn = round_index % len(order)
        for method in order[turn:] + order[:turn]:
            synchronize(device)
            start = time.perf_counter()
            for batch in work:
                steps[method](*batch)
            synchronize(device)
            speeds[method].append(images_in_block / (time.perf_counter() - start))
        print(f"round {round_index + 1}: " + ", ".join(f"{m} {v[-1]:,.0f}" for m, v in speeds.items()), flush=True)
    return speeds


def run(argv: list[str] | None = None) -> None:
    """Print images/s per method and the ratio to softmax, with the 5% goal."""
    parser = argparse.ArgumentParser(prog="protobench bench methods", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_setting_options(parser, suite="quickstart", device="auto", device_help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, each compared with softmax's")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; all but the first are timed")
    parser.add_argument("--backbone", default=None, help="another registered backbone (default: the suite's)")
    parser.add_argument("--batch-size", type=int, default=None, help="another batch size (default: the suite's)")
    parser.add_argument("--kernels-only", action="store_true", help="count kernels per step, time nothing")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run steps eagerly")
    parser.add_argument("--paired-steps", type=int, default=None, metavar="N",
                        help="time blocks of N training steps (the same batches for every method) instead of "
                             "whole cells; --epochs is then unused")  # fmt: skip
    args = parser.parse_args(argv)
    if args.kernels_only:
        args.rounds = 0
    elif args.rounds < 1:
        raise UserError(f"--rounds is {args.rounds}; use --rounds >= 1 (or --kernels-only to time nothing)")
    if args.paired_steps is not None and args.paired_steps < 1:
        raise UserError(f"--paired-steps is {args.paired_steps}; use --paired-steps >= 1 (steps per timed block)")
    import torch

    from protobench.core.device import device_name, resolve_device

    methods = args.methods.split(",") if args.methods else None
    speeds, kernels = measure(args.suite, args.dim, methods, args.rounds, args.epochs, args.device, args.data_dir,
                     args.train_subset, args.backbone, args.batch_size, not args.no_cuda_graphs,
                     args.paired_steps)  # fmt: skip
    resolved = resolve_device(args.device)
    device = device_name(resolved)
    if resolved.type == "cuda":
        device += ", eager steps" if args.no_cuda_graphs else ", steps replayed from CUDA graphs"
    backbone = args.backbone or "suite's backbone"
    if args.kernels_only:
        print(f"kernels per training step, suite {args.suite} ({backbone}), d={args.dim}; torch {torch.__version__}; "
              f"{device}")  # fmt: skip
        print(f"{'method':<14}{'kernels/step':>12}{'softmax/it':>12}")
        for method, count in kernels.items():
            print(f"{method:<14}{count:>12}{kernels['softmax'] / count:>12.3f}")
        return
    comparisons = compare_to_softmax(speeds)
    if args.paired_steps:
        timed = f"each a block of the same {args.paired_steps} batches for every method, steps alone timed"
    else:
        timed = f"epochs 2-{args.epochs} of each timed" if args.epochs > 1 else "its one epoch timed"
    print(f"training images/s, suite {args.suite} ({backbone}), d={args.dim}, {args.rounds} interleaved rounds, "
          f"{timed}; torch {torch.__version__}; {device}")  # fmt: skip
    coverage = order_statistic_rank(args.rounds)[1]
    print(f"vs softmax: median of the per-round ratios; range: a {coverage:.1%} confidence interval for the "
          f"median ratio (order statistics of the per-round ratios)")  # fmt: skip
    goal = f"goal >= {GOAL:.2f}"
    print(f"{'method':<14}{'images/s':>12}{'spread':>8}{'vs softmax':>12}{'range':>14}  {goal:<13}"
          f"{'kernels/step':>14}{'softmax/it':>12}")  # fmt: skip
    for method, compared in comparisons.items():
        spread = f"{100 * compared.spread:.0f}%"
        verdict = "" if method == "softmax" else compared.verdict
        span = "" if method == "softmax" else f"{compared.low:.3f}-{compared.high:.3f}"
        launch = kernels["softmax"] / kernels[method]
        print(f"{method:<14}{compared.median:>12,.0f}{spread:>8}{compared.ratio:>12.3f}{span:>14}  {verdict:<13}"
              f"{kernels[method]:>14}{launch:>12.3f}")  # fmt: skip


if __name__ == "__main__":
    run()
