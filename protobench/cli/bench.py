"""``protobench bench NAME [OPTIONS]``: the benchmarks of protobench/bench as one command group.

Each command hands its options, ``--help`` included, untouched to the benchmark's own parser (the
``run(argv)`` that ``python -m protobench.bench NAME`` calls), so both ways of running a benchmark
take the same options; a UserError it raises becomes main()'s one ``error:`` line and exit 2.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import typer

app = typer.Typer(
    help="Benchmarks and hardware checks: speed per method, data pipeline, prototypes, CUDA graphs, a GPU node, "
    "packing cells into one process.",
    no_args_is_help=True,
    add_completion=False,
)

#: Click leaves every option and argument (and --help) to the benchmark's parser.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

#: Benchmark name -> one-line summary for ``protobench bench --help`` (the benchmark's --help has the rest).
SUMMARIES = {
    "methods": "Each method's training images/s relative to softmax, and kernels per training step.",
    "pipeline": "Training images/s of the engine's data path vs a torch DataLoader pipeline vs the model alone.",
    "gpu-check": "On one GPU (< 8 min): pipeline, runner throughput at --jobs 1/4/8, projected CIFAR-100 grid "
    "time; refuses without CUDA (a CPU smoke test: --device cpu --quick).",
    "prototypes": "Time uniform prototype generation and Hungarian matching on the CPU.",
    "graphs": "Check on CUDA that graph-replayed training steps give exactly the eager steps' numbers.",
    "pack": "Aggregate training images/s of N cells in one process (N = 1..32) per packing strategy: sequential, "
    "CUDA streams, streams with CUDA graphs, one fused (stacked) model.",
}


def forward(name: str, argv: list[str]) -> None:
    """Run benchmark ``name`` (as registered for ``python -m protobench.bench``) with ``argv``."""
    from protobench.bench.__main__ import BENCHMARKS

    module_name, func_name = BENCHMARKS[name].split(":")
    getattr(importlib.import_module(module_name), func_name)(argv)


def make_command(name: str) -> Callable[[typer.Context], None]:
    """A command that passes its whole command line on to benchmark ``name``."""

    def command(ctx: typer.Context) -> None:
        forward(name, list(ctx.args))

    command.__doc__ = f"{SUMMARIES[name]} Options: protobench bench {name} --help."
    return command


for _name in SUMMARIES:
    app.command(_name, context_settings=PASS_THROUGH)(make_command(_name))
