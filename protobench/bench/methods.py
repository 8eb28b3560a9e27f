"""Benchmark: each method's training images/s relative to softmax, same backbone, batch and data, one run.

Every method trains through the real engine (``train_cell``) on the suite's real data; the figure is
the engine's own training throughput over every epoch but the first (which carries cuDNN autotuning
and, on CUDA, the step's graph capture); the GPU is synchronised at the start and end of each epoch
only, and evaluation is not timed. Methods are measured in interleaved rounds, so each round gives
a paired ratio (the method's images/s over softmax's in the same round) and slow drift of the machine
cancels in it. The table shows the median paired ratio and the range of the paired ratios; over n
rounds that range holds the true median ratio with probability 1 - 2^(1-n) (a sign-test bound, no
assumption on the noise), so the verdict is "ok" when the whole range meets the goal, "SLOWER" when
none of it does and "undecided" otherwise (more rounds narrow it).

Beside the timing it counts the kernels one training step runs (forward, backward, optimiser and
the head's bookkeeping; views, in-place view changes and allocations excluded), an exact figure:
when a small model leaves the GPU waiting on kernel launches, eager step time follows that count.
On CUDA the engine replays each step from a CUDA graph (``--no-cuda-graphs`` measures eager steps).

    python -m protobench.bench methods --suite quickstart --dim 16 --rounds 3 --device auto
    python -m protobench.bench methods --suite fashion-mnist --backbone resnet32 --kernels-only  # no timing
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path
from typing import Any

from protobench.bench.options import add_setting_options, keep_first_training_images
from protobench.errors import UserError

GOAL = 0.95  # every prototype method within 5% of softmax


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One method's training speed against softmax over interleaved rounds."""

    median: float  # images/s, median over rounds
    spread: float  # (max - min) / median of the rounds' images/s
    ratio: float  # median over rounds of (method / softmax in the same round)
    low: float  # smallest paired ratio
    high: float  # largest paired ratio

    @property
    def verdict(self) -> str:
        """'ok' if every paired ratio meets the goal, 'SLOWER' if none does, else 'undecided'."""
        if self.low >= GOAL:
            return "ok"
        return "SLOWER" if self.high < GOAL else "undecided"


def compare_to_softmax(speeds: dict[str, list[float]]) -> dict[str, Comparison]:
    """Per method, its images/s per round (round i at index i, softmax among them) against softmax's."""
    base = speeds["softmax"]
    comparisons = {}
    for method, values in speeds.items():
        if len(values) != len(base) or not values:
            raise ValueError(f"{method}: {len(values)} rounds measured, softmax {len(base)}")
        median = statistics.median(values)
        paired = [value / softmax for value, softmax in zip(values, base, strict=True)]
        comparisons[method] = Comparison(median, (max(values) - min(values)) / median,
                                         statistics.median(paired), min(paired), max(paired))  # fmt: skip
    return comparisons


def sign_test_coverage(rounds: int) -> float:
    """Probability that the min..max of ``rounds`` independent samples holds their distribution's median."""
    return 1.0 - 2.0 ** (1 - rounds)


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
    creates the optimiser state)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from protobench.engine import build_learner, cell_loaders, train_step

    class KernelCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.count += launches_kernel(func)
            return func(*args, **(kwargs or {}))

    learner = build_learner(suite, data, method, dim, 0, device)
    train_loader = cell_loaders(suite.train, data, device, 0)[0]
    train_loader.set_epoch(0)
    batches = iter(train_loader)
    train_step(learner, *next(batches))
    images, labels = next(batches)
    with KernelCounter() as counter:
        train_step(learner, images, labels)
    return counter.count


def measure(suite_name: str, dim: int, methods: list[str] | None, rounds: int, epochs: int, device_spec: str,
            data_dir: Path | None, train_subset: int | None, backbone: str | None = None,
            batch_size: int | None = None, cuda_graphs: bool = True,
            ) -> tuple[dict[str, list[float]], dict[str, int]]:  # fmt: skip
    """images/s of each method (epochs after the first), ``rounds`` times, interleaved; and kernels per step."""

    from protobench.data.prepare import prepare_cell_data
    from protobench.engine import resolve_device, train_cell
    from protobench.suites import load_suite

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
    data = prepare_cell_data(suite, data_dir, None)
    keep_first_training_images(data, train_subset)
    speeds: dict[str, list[float]] = {m: [] for m in names}
    kernels: dict[str, int] = {}
    for round_index in range(rounds):
        for method in names:
            try:
                outcome = train_cell(suite, data, method, dim, round_index, device=device, cuda_graphs=cuda_graphs)
            except Exception as error:  # n/a at this dim (ETF) or a failure: say so and go on
                print(f"{method}: skipped ({type(error).__name__}: {error})")
                speeds.pop(method, None)
                continue
            if method in speeds:
                if method not in kernels:
                    kernels[method] = kernels_per_step(suite, data, method, dim, device)
                timed = outcome.history[1:] or outcome.history
                # Epochs are equally long: the harmonic mean of their rates is images over seconds.
                speeds[method].append(statistics.harmonic_mean([row["images_per_second"] for row in timed]))
                # A line per measurement as it lands, so a run cut short still shows what it measured.
                print(f"round {round_index + 1} {method}: {speeds[method][-1]:,.0f} images/s", flush=True)
    if rounds == 0:  # kernels only
        for method in names:
            try:
                kernels[method] = kernels_per_step(suite, data, method, dim, device)
            except Exception as error:
                print(f"{method}: skipped ({type(error).__name__}: {error})")
        speeds = {m: [] for m in kernels}
    return speeds, kernels


def run(argv: list[str] | None = None) -> None:
    """Print images/s per method and the ratio to softmax, with the 5% goal."""
    parser = argparse.ArgumentParser(prog="python -m protobench.bench methods", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_setting_options(parser, suite="quickstart", device="auto", device_help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, each compared with softmax's")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; all but the first are timed")
    parser.add_argument("--backbone", default=None, help="another registered backbone (default: the suite's)")
    parser.add_argument("--batch-size", type=int, default=None, help="another batch size (default: the suite's)")
    parser.add_argument("--kernels-only", action="store_true", help="count kernels per step, time nothing")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run steps eagerly")
    args = parser.parse_args(argv)
    if args.kernels_only:
        args.rounds = 0
    elif args.rounds < 1:
        raise UserError(f"--rounds is {args.rounds}; use --rounds >= 1 (or --kernels-only to time nothing)")
    import torch

    from protobench.engine import device_name, resolve_device

    methods = args.methods.split(",") if args.methods else None
    speeds, kernels = measure(args.suite, args.dim, methods, args.rounds, args.epochs, args.device, args.data_dir,
                     args.train_subset, args.backbone, args.batch_size, not args.no_cuda_graphs)  # fmt: skip
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
    timed = f"epochs 2-{args.epochs} of each timed" if args.epochs > 1 else "its one epoch timed"
    print(f"training images/s, suite {args.suite} ({backbone}), d={args.dim}, {args.rounds} interleaved rounds, "
          f"{timed}; torch {torch.__version__}; {device}")  # fmt: skip
    print(f"vs softmax: median of the per-round ratios; range: their min-max, which holds the true median ratio "
          f"with probability {sign_test_coverage(args.rounds):.0%}")  # fmt: skip
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
