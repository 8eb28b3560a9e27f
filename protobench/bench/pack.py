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
import gc
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from protobench.bench.options import write_json
from protobench.bench.packing import LR_SPREAD, MOMENTUM, SHAPES, STRATEGIES, Packed, Setting, Unavailable, cell_lrs
from protobench.bench.pipeline import ArgumentParser
from protobench.core.errors import UserError, did_you_mean

DEFAULT_N = (1, 2, 4, 8, 16, 32)
QUICK_N = (1, 2)
#: Timed and untimed steps per (shape, strategy, N). The default GPU run (2 shapes, 5 strategies,
#: N = 1..32) is estimated at 3 to 6 minutes on one H100 (docs/bench.md).
DEFAULT_STEPS, DEFAULT_WARMUP = 50, 5
QUICK_STEPS, QUICK_WARMUP = 2, 1


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
    from protobench.core.device import synchronize

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
    from protobench.core.device import device_name, resolve_device, torch_threads

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
        write_json(args.json, result, "--json")


if __name__ == "__main__":
    run()
