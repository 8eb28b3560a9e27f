"""Check on one GPU (under 8 minutes): data pipeline, runner throughput and the CIFAR-100 grid's wall time.

All training reads synthetic files: random uint8 images written in the CIFAR-100 python pickle
layout to a temporary folder and loaded through protobench's own CIFAR loading (``--data-dir``), so
no download is needed and no accuracy means anything. Steps (docs/bench.md):

1. the pipeline benchmark (``bench pipeline``) for the cifar100 suite's ResNet-32 at 32 x 32;
2. a short ResNet-32 grid (softmax and dl2pa x 4 seeds, 2 epochs) through the real runner
   (``run_suite``, a temporary results folder) with 1, 4 and 8 jobs, then packed (``--pack`` 4 and 8, one
   process): aggregate training images/s, i.e. images trained over the run's wall time (process start,
   data loading and evaluation included);
3. the projected wall time of the cifar100 paper grid from the best of those rates, naming its jobs and pack;
4. with two or more GPUs, a 2-rank data-parallel cell launched with torchrun (docs/distributed.md):
   whether it ran and its wall time; "skipped: one GPU" otherwise.

It prints one table and writes everything as JSON (``--out``). ``--quick`` shrinks every step
(a few images, one round, jobs 1 and 2) and, with ``--device cpu``, is a smoke test for any machine.

    protobench bench gpu-check
    protobench bench gpu-check --device cpu --quick --out /tmp/check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protobench.bench.options import write_json
from protobench.bench.pipeline import ArgumentParser
from protobench.core.errors import UserError

#: A GPU node's goals (docs/bench.md): the engine at least 3x the DataLoader loop and 0.8x the model
#: alone at CIFAR shape, and the cifar100 paper grid in at most 2 hours on one GPU.
GPU_GOALS = {"dataloader": 3.0, "model_only": 0.8}
GRID_HOURS_GOAL = 2.0
SYNTHETIC = "synthetic: random uint8 images in the CIFAR-100 python layout, not CIFAR-100 (accuracies are meaningless)"
CIFAR100_TRAIN_IMAGES = 50_000  # the real training split, for the projection (synthetic files may be smaller)
NUM_CLASSES = 100


@dataclasses.dataclass(frozen=True)
class Plan:
    """How big each step is."""

    train_images: int
    test_images: int
    rounds: int  # pipeline benchmark
    steps: int
    warmup: int | None
    batch: int | None  # None: the suite's
    jobs: tuple[int, ...]  # runner grid, unpacked
    packs: tuple[int, ...]  # runner grid, one process packing this many cells
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    dim: int


FULL = Plan(50_000, 10_000, 5, 50, None, None, (1, 4, 8), (4, 8), ("softmax", "dl2pa"), (0, 1, 2, 3), 2, 50)
QUICK = Plan(32, 16, 1, 2, 1, 8, (1, 2), (2,), ("softmax", "dl2pa"), (0,), 1, 10)


def write_synthetic_cifar100(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train,test,meta}``: dicts of bytes keys as the real files hold them, each
    ``data`` an N x 3072 uint8 array (red, green, blue planes, rows of 32), labels balanced over 100
    classes; pickled at protocol 2, the real files' protocol. Returns the folder."""
    import numpy as np

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        fine = rng.permutation(np.arange(count) % NUM_CLASSES)
        entry = {
            b"filenames": [f"synthetic_{split}_{i}.png".encode() for i in range(count)],
            b"batch_label": f"synthetic {split} batch".encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),  # not the real superclass map; protobench does not read it
            b"data": rng.integers(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        b"fine_label_names": [f"synthetic_{k}".encode() for k in range(NUM_CLASSES)],
        b"coarse_label_names": [f"synthetic_super_{k}".encode() for k in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def grid_suite(plan: Plan) -> Any:
    """The cifar100 suite cut to the check's short grid (its ResNet-32, recipe and augmentation)."""
    from protobench.suite.definition import load_suite

    suite = load_suite("cifar100").with_overrides(
        methods=list(plan.methods), dims=[plan.dim], seeds=list(plan.seeds), epochs=plan.epochs
    )
    train = dataclasses.replace(suite.train, batch_size=plan.batch or suite.train.batch_size)
    return dataclasses.replace(suite, name="gpu-check", train=train, val_size=0)


def time_grid(plan: Plan, data_dir: Path, device: Any, jobs: int, pack: int = 1) -> dict[str, Any]:
    """Train the short grid once with ``jobs`` worker processes, each packing ``pack`` cells, into a fresh
    results folder."""
    from protobench.core.progress import PlainReporter
    from protobench.running.runner import RunOptions, run_suite

    suite = grid_suite(plan)
    with tempfile.TemporaryDirectory(prefix="gpu-check-results-") as results:
        start = time.perf_counter()
        options = RunOptions(data_dir=data_dir, device=device, pack=pack)
        summary = run_suite(suite, results_dir=Path(results), options=options,
                            reporter=PlainReporter(stream=sys.stderr), jobs=jobs)  # fmt: skip
        wall = time.perf_counter() - start
    images = summary.trained * plan.epochs * plan.train_images
    return {
        "jobs": jobs, "pack": pack, "cells": summary.total, "trained": summary.trained, "failed": summary.failed,
        "epochs": plan.epochs, "images": images, "wall_s": wall, "aggregate_images_per_s": images / wall,
    }  # fmt: skip


def project_paper_grid(rate: float, jobs: int, pack: int = 1) -> dict[str, Any]:
    """Wall time of the cifar100 suite's grid at ``rate`` training images/s (cells that cannot exist left out)."""
    from protobench.prototypes import etf_dimension_problem
    from protobench.suite.definition import load_suite

    suite = load_suite("cifar100")
    cells = list(itertools.product(suite.imbalance_ratios, suite.dims, suite.methods, suite.seeds))
    trained = [(d, m) for _, d, m, _ in cells if not (m == "etf" and etf_dimension_problem(NUM_CLASSES, d))]
    per_epoch = CIFAR100_TRAIN_IMAGES - suite.val_size
    images = sum(suite.recipe_for(method).epochs * per_epoch for _, method in trained)
    seconds = images / rate
    return {
        "suite": suite.name, "cells": len(cells), "cells_trained": len(trained), "images": images,
        "images_per_s": rate, "jobs": jobs, "pack": pack, "seconds": seconds, "hours": seconds / 3600,
    }  # fmt: skip


def ddp_check(data_dir: Path, device: Any, timeout: float = 300.0) -> dict[str, Any]:
    """Launch one cell on 2 ranks with torchrun when this machine has two GPUs or more (docs/distributed.md)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type != "cuda":
        return {"status": "skipped: not on CUDA", "gpus": count}
    if count < 2:
        return {"status": "skipped: one GPU" if count == 1 else "skipped: no GPU", "gpus": count}
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as results:
        args = ["--nproc-per-node", "2", "-m", "protobench", "run", "cifar100", "--methods", "softmax",
                "--dims", "50", "--seeds", "0", "--epochs", "1", "--data-dir", str(data_dir),
                "--results", results, "--device", "cuda"]  # fmt: skip
        start = time.perf_counter()
        try:  # torch.distributed.run is the module behind the torchrun script
            done = subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], capture_output=True,
                                  text=True, timeout=timeout)  # fmt: skip
            status = "ran" if done.returncode == 0 else f"failed (exit {done.returncode})"
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        except subprocess.TimeoutExpired:
            status, tail = f"failed (timed out after {timeout:.0f} s)", [""]
    return {"status": status, "gpus": count, "command": shlex.join(["torchrun", *args]),
            "wall_s": time.perf_counter() - start, "last_line": tail[0]}  # fmt: skip


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 1")
    return int(text)


def job_levels(text: str) -> tuple[int, ...]:
    """An argparse type: ``--jobs`` levels such as ``1,4,8``."""
    return tuple(positive(part.strip()) for part in text.split(","))


def check_device(spec: str, quick: bool) -> Any:
    """The device to check: CUDA (refused in one line where there is none), or the CPU for ``--quick`` only."""
    import torch

    from protobench.core.device import resolve_device

    if spec == "cpu":
        if not quick:
            raise UserError("gpu-check --device cpu runs only with --quick (a CPU smoke test); use --device cuda")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("gpu-check needs a CUDA GPU and this machine has none; run it on a GPU node "
                        "(a CPU smoke test: --device cpu --quick)")  # fmt: skip
    return resolve_device("cuda" if spec == "auto" else spec)


def gpu_check(
    device_spec: str = "cuda", *, quick: bool = False, workers: int | None = None, cuts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run the four steps and return the result (what ``--out`` holds). ``cuts`` replaces fields of the
    plan (``rounds``, ``steps``, ``jobs``, ``packs``, ``epochs``) to fit a short GPU slot; the JSON names them."""
    import torch

    from protobench.bench.pipeline import benchmark
    from protobench.core.device import device_name

    device = check_device(device_spec, quick)
    cuts = {k: v for k, v in (cuts or {}).items() if v is not None}
    plan = dataclasses.replace(QUICK if quick else FULL, **cuts)
    started, threads = time.perf_counter(), torch.get_num_threads()
    if quick and device.type == "cpu":  # a smoke test: one thread is far faster on a busy CPU than several
        torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-data-") as folder:
            root = Path(folder)
            write_synthetic_cifar100(root, plan.train_images, plan.test_images)
            print(f"gpu-check: wrote {plan.train_images:,} + {plan.test_images:,} {SYNTHETIC}", file=sys.stderr)
            pipeline = benchmark("cifar100", batch=plan.batch, device=str(device), rounds=plan.rounds,
                                 steps=plan.steps, workers=workers, warmup=plan.warmup, data_dir=root)  # fmt: skip
            grid = [time_grid(plan, root, device, jobs) for jobs in plan.jobs]
            grid += [time_grid(plan, root, device, 1, pack) for pack in plan.packs]
            ddp = ddp_check(root, device)
        name = device_name(device)
    finally:
        torch.set_num_threads(threads)
    best = max(grid, key=lambda run: run["aggregate_images_per_s"])
    projection = project_paper_grid(best["aggregate_images_per_s"], best["jobs"], best["pack"])
    return {
        "data": {"note": SYNTHETIC, "train_images": plan.train_images, "test_images": plan.test_images},
        "device": str(device), "device_name": name, "gpus": torch.cuda.device_count(),
        "torch": torch.__version__, "quick": quick, "cuts": cuts, "pipeline": pipeline, "grid": grid,
        "projection": projection, "goals": gpu_goals(pipeline, projection), "ddp": ddp,
        "wall_s": time.perf_counter() - started,
    }  # fmt: skip


def gpu_goals(pipeline: dict[str, Any], projection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each GPU goal with its figure and verdict: a ratio's from its interval (``ok``, ``SLOWER`` or
    ``undecided``, as ``bench pipeline`` decides), the grid's from the projected hours (``ok`` or ``missed``)."""
    from protobench.bench.pipeline import verdict

    goals: dict[str, dict[str, Any]] = {}
    for other, goal in GPU_GOALS.items():
        ratio = pipeline[f"ratio_engine_vs_{other}"]
        goals[f"engine_vs_{other}"] = {"goal": goal, "figure": ratio["median"],
                                       "verdict": verdict(ratio["low"], ratio["high"], goal)}  # fmt: skip
    hours = projection["hours"]
    goals["paper_grid_hours"] = {"goal": GRID_HOURS_GOAL, "figure": hours,
                                 "verdict": "ok" if hours <= GRID_HOURS_GOAL else "missed"}  # fmt: skip
    return goals


def print_table(result: dict[str, Any]) -> None:
    """One table: a row per measurement."""
    from rich.console import Console
    from rich.table import Table

    pipe, projection = result["pipeline"], result["projection"]
    cuts = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                     for k, v in result.get("cuts", {}).items())  # fmt: skip
    table = Table(title=f"gpu-check on {result['device_name']} (torch {result['torch']}); data {SYNTHETIC}"
                  + (f"; cut to: {cuts}" if cuts else ""), title_justify="left")  # fmt: skip
    for column in ("step", "measurement", "figure"):
        table.add_column(column, justify="right" if column == "figure" else "left")
    setting = f"ResNet-32, batch {pipe['batch']}, {pipe['precision']}, {pipe['rounds']} rounds x {pipe['steps']} steps"
    paths = {"engine": f"engine ({setting})", "dataloader": f"DataLoader ({pipe['workers']} workers, fp32)",
             "model_only": "model only (one fixed batch)"}  # fmt: skip
    for name, label in paths.items():
        step = "1 pipeline" if name == "engine" else ""
        table.add_row(step, f"{label} images/s", f"{pipe[f'{name}_images_per_s']:,.0f}")
    for other in ("dataloader", "model_only"):
        ratio, goal = pipe[f"ratio_engine_vs_{other}"], result["goals"][f"engine_vs_{other}"]
        what = f"engine / {other.replace('_', ' ')}, GPU goal >= {goal['goal']:.2f}"
        interval = f"{ratio['coverage']:.0%} interval {ratio['low']:.2f}-{ratio['high']:.2f}"
        table.add_row("", f"{what} ({interval})", f"{ratio['median']:.2f} {goal['verdict']}")
    for run in result["grid"]:
        failed = f", {run['failed']} FAILED" if run["failed"] else ""
        table.add_row("2 runner grid", f"{packing(run)}: {run['trained']} cells x {run['epochs']} epochs, "
                      f"{run['images']:,} images in {run['wall_s']:.1f} s{failed}",
                      f"{run['aggregate_images_per_s']:,.0f} images/s")  # fmt: skip
    not_applicable = projection["cells"] - projection["cells_trained"]
    table.add_row("3 projection", f"{projection['suite']} paper grid: {projection['cells_trained']} cells "
                  f"({not_applicable} n/a left out), {projection['images']:,} training images at "
                  f"{projection['images_per_s']:,.0f} images/s ({packing(projection)}), goal <= "
                  f"{GRID_HOURS_GOAL:g} h",
                  f"{projection['hours']:.2f} h {result['goals']['paper_grid_hours']['verdict']}")  # fmt: skip
    ddp = result["ddp"]
    table.add_row("4 DDP, 2 ranks", ddp.get("command", "(needs 2 GPUs)"), ddp["status"])
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def packing(run: dict[str, Any]) -> str:
    """How a grid run or the projection trained its cells: ``--jobs 4`` or ``--pack 8``."""
    return f"--pack {run['pack']}" if run.get("pack", 1) > 1 else f"--jobs {run['jobs']}"


def run(argv: list[str] | None = None) -> None:
    """Parse the options, run the check, print the table and write the JSON."""
    parser = ArgumentParser(prog="protobench bench gpu-check", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu only with --quick)")
    parser.add_argument("--quick", action="store_true", help="shrink every step (a smoke test, seconds on a CPU)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of step 1 (default min(4, CPUs))")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="where the JSON goes")
    cut = parser.add_argument_group("cuts, to fit a short GPU slot (the JSON's `cuts` names them)")
    cut.add_argument("--rounds", type=positive, default=None, help=f"pipeline rounds (default {FULL.rounds})")
    cut.add_argument("--steps", type=positive, default=None, help=f"timed steps a turn (default {FULL.steps})")
    cut.add_argument("--jobs", type=job_levels, default=None,
                     help="runner grid --jobs levels, comma-separated (default 1,4,8)")  # fmt: skip
    cut.add_argument("--packs", type=job_levels, default=None,
                     help="runner grid --pack levels (one process), comma-separated (default 4,8)")  # fmt: skip
    cut.add_argument("--epochs", type=positive, default=None, help=f"epochs a grid cell (default {FULL.epochs})")
    args = parser.parse_args(argv)
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder; give a file name, e.g. --out {args.out / 'gpu-check.json'}")
    cuts = {"rounds": args.rounds, "steps": args.steps, "jobs": args.jobs, "packs": args.packs, "epochs": args.epochs}
    result = gpu_check(args.device, quick=args.quick, workers=args.workers, cuts=cuts)
    print_table(result)
    write_json(args.out, result, "--out")


if __name__ == "__main__":
    run()
