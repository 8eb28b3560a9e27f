"""Benchmark: time for uniform prototypes to converge, and Hungarian matching time (CPU).

Goals are for a 2-core CPU; the timer covers one whole call (init, optimisation, float32 copy).
"""

from __future__ import annotations

import statistics
import time

import torch

from protobench import prototypes
from protobench.heads import assignment

# (K, d, goal in seconds) for uniform prototypes; (K, goal in ms) for matching.
UNIFORM_CASES: tuple[tuple[int, int, float], ...] = ((100, 50, 2.0), (1000, 512, 30.0))
MATCHING_CASES: tuple[tuple[int, float], ...] = ((100, 5.0), (1000, 100.0))
MATCHING_REPEATS = 7


def run(argv: list[str] | None = None) -> None:
    """Print goal and measured side by side for prototype generation and matching (no options)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)  # wide enough for the tables even when piped
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")

    table = Table(title="uniform prototypes (t=2, cpu, no cache)")
    for col in (
        "K",
        "d",
        "goal s",
        "measured s",
        "ok",
        "steps",
        "converged",
        "min angle",
        "max cos",
        "energy",
    ):
        table.add_column(col, justify="right")
    # Warm-up: the first torch call pays for thread-pool and kernel set-up, which is not the solver.
    prototypes.generate("uniform", 8, 4, 0, use_cache=False, device="cpu")
    for K, d, goal in UNIFORM_CASES:
        start = time.perf_counter()
        P, info = prototypes.generate_with_info("uniform", K, d, 0, use_cache=False, device="cpu")
        seconds = time.perf_counter() - start
        m = prototypes.metrics(P)
        table.add_row(
            str(K), str(d), f"{goal:.1f}", f"{seconds:.2f}", "yes" if seconds <= goal else "NO",
            str(info.iterations), str(info.converged), f"{m.min_angle_deg:.3f}", f"{m.max_cosine:.2e}",
            f"{m.uniformity_energy:.6f}",
        )  # fmt: skip
    console.print(table)

    table = Table(title=f"Hungarian matching (random K x 64 inputs, median of {MATCHING_REPEATS})")
    for col in ("K", "goal ms", "median ms", "min ms", "ok"):
        table.add_column(col, justify="right")
    gen = torch.Generator().manual_seed(0)
    for K, goal in MATCHING_CASES:
        times = []
        for _ in range(MATCHING_REPEATS):
            Q = torch.randn(K, 64, generator=gen)
            P = torch.randn(K, 64, generator=gen)
            start = time.perf_counter()
            assignment.hungarian(Q, P)
            times.append((time.perf_counter() - start) * 1e3)
        median = statistics.median(times)
        table.add_row(str(K), f"{goal:.0f}", f"{median:.2f}", f"{min(times):.2f}", "yes" if median <= goal else "NO")
    console.print(table)
