"""Dispatch ``python -m protobench.bench NAME`` to the benchmark registered under NAME."""

from __future__ import annotations

import argparse
import importlib
import sys

from protobench.core.errors import UserError

# name -> "module:function"; add a benchmark by adding a line.
BENCHMARKS: dict[str, str] = {
    "prototypes": "protobench.bench.prototypes:run",
    "methods": "protobench.bench.methods:run",
    "graphs": "protobench.bench.graphs:run",
    "pipeline": "protobench.bench.pipeline:run",
    "gpu-check": "protobench.bench.gpu_check:run",
    "pack": "protobench.bench.pack:run",
}


def main(argv: list[str] | None = None) -> None:
    """Parse the benchmark name and run it."""
    parser = argparse.ArgumentParser(prog="python -m protobench.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (see NAME --help)")
    args = parser.parse_args(argv)
    module_name, func_name = BENCHMARKS[args.name].split(":")
    try:
        getattr(importlib.import_module(module_name), func_name)(args.options)
    except UserError as error:  # bad suite, data missing, ...: one line and exit 2, as the CLI does
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
