"""Check: training with steps replayed from CUDA graphs gives the numbers eager steps give (CUDA only).

Each method trains the same cell twice from the same seed with deterministic kernels, once with
eager steps and once with graph-replayed ones, and the two outcomes are compared: every epoch's
train loss, train and test accuracy, and every tensor of the final backbone and head. They should
be equal bit for bit (a replay runs the kernels the eager step launches, on the same inputs).

    python -m protobench.bench graphs --suite fashion-mnist --dim 16 --epochs 2 --train-subset 20000
    python -m protobench.bench graphs --suite fashion-mnist-lt --ratio 100   # dot-regression loss, mixup
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from protobench.bench.options import add_setting_options, keep_first_training_images

HISTORY_KEYS = ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy")


def differences(eager: Any, graphed: Any) -> list[str]:
    """What differs between two ``CellOutcome``s of one cell: per-epoch figures and final state tensors
    (an empty list when they are equal bit for bit)."""
    found = []
    for row_a, row_b in zip(eager.history, graphed.history, strict=True):
        for key in HISTORY_KEYS:
            if row_a.get(key) != row_b.get(key):
                found.append(f"epoch {row_a['epoch']} {key}: {row_a.get(key)} vs {row_b.get(key)}")
    for part in ("backbone", "method"):
        for key, tensor in eager.state[part].items():
            other = graphed.state[part][key]
            if not torch.equal(tensor, other):
                gap = (tensor.double() - other.double()).abs().max().item()
                found.append(f"{part}.{key}: max |difference| {gap:.3g}")
    return found


def compare(
    suite: Any, data: Any, dim: int, device: torch.device, ratio: float | None = None
) -> dict[str, tuple[list[str], list[float]] | str]:
    """Per method of ``suite``: (differences, [eager, graphed] images/s of the last epoch), or the
    reason it is not applicable at ``dim``. Seed 0, deterministic kernels."""
    from protobench.core.device import resolve_precision
    from protobench.engine.loop import train_cell
    from protobench.methods import NotApplicable
    from protobench.running.grid import spec_for

    precision = resolve_precision(suite.train.precision, device)
    outcome: dict[str, tuple[list[str], list[float]] | str] = {}
    for method in suite.methods:
        try:
            eager, graphed = (
                train_cell(
                    spec_for(suite, method, dim, 0, ratio, precision=precision, deterministic=True),
                    data,
                    device=device,
                    cuda_graphs=graphs,
                )
                for graphs in (False, True)
            )
        except NotApplicable as reason:
            outcome[method] = str(reason)
            continue
        speeds = [o.history[-1]["images_per_second"] for o in (eager, graphed)]
        outcome[method] = (differences(eager, graphed), speeds)
    return outcome


def run(argv: list[str] | None = None) -> None:
    """Train each method eagerly and graph-replayed, print whether the outcomes are identical."""
    parser = argparse.ArgumentParser(prog="protobench bench graphs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_setting_options(parser, suite="fashion-mnist", device="cuda", device_help="cuda or cuda:N")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training (>= 2 covers a re-matching)")
    parser.add_argument("--ratio", type=float, default=None, help="imbalance ratio of a long-tailed suite")
    args = parser.parse_args(argv)

    from protobench.core.device import device_name, resolve_device
    from protobench.core.errors import UserError
    from protobench.data.prepare import prepare_cell_data
    from protobench.suite.definition import load_suite

    methods = args.methods.split(",") if args.methods else None
    suite = load_suite(args.suite).with_overrides(methods=methods, dims=[args.dim], epochs=args.epochs)
    ratios = list(suite.imbalance_ratios)
    ratio = ratios[0] if args.ratio is None else args.ratio
    if ratio not in ratios:
        raise UserError(f"--ratio {args.ratio:g}: suite {suite.name} has ratios {ratios}; pick one of them")
    device = resolve_device(args.device)
    if device.type != "cuda":
        raise UserError(f"--device {args.device}: CUDA graphs exist only on CUDA; run this on a GPU (--device cuda)")
    data = prepare_cell_data(suite.data_settings, args.data_dir, ratio)
    keep_first_training_images(data, args.train_subset)
    print(f"graph-replayed vs eager steps, deterministic kernels: suite {suite.name} (ratio {ratio}), "
          f"d={args.dim}, {args.epochs} epochs; torch {torch.__version__}; {device_name(device)}")  # fmt: skip
    differing = 0
    for method, result in compare(suite, data, args.dim, device, ratio).items():
        if isinstance(result, str):
            print(f"{method:<14}n/a ({result})")
            continue
        found, (eager, graphed) = result
        differing += bool(found)
        verdict = "identical" if not found else f"DIFFERS in {len(found)} places"
        print(f"{method:<14}{verdict:<26}last epoch {eager:>10,.0f} images/s eager {graphed:>10,.0f} graphed")
        for line in found[:5]:
            print(f"{'':<14}{line}")
    print("every method identical" if not differing else f"{differing} method(s) differ")
    if differing:
        raise SystemExit(1)
