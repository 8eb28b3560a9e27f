"""Shared fixtures: an isolated cache, tiny Fashion-MNIST files, a tiny suite, the CLI in-process, and
the ``gpu`` marker.

Tests marked ``gpu`` compare a CUDA run with its eager or CPU twin; they are skipped where CUDA is
missing (CI) and are what ``pytest -m gpu`` runs on a GPU node (.ci/gpu-acceptance). With
``PROTOBENCH_GPU_TESTS_ON_CPU=1`` they run on the CPU instead, a rehearsal of the code paths before
a GPU is at hand (graphs then fall back to eager steps, so a graph-vs-eager test proves nothing there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.data.fakefiles import isolate_data_env, write_fashion_mnist

GPU_REHEARSAL = os.environ.get("PROTOBENCH_GPU_TESTS_ON_CPU") == "1"

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N` (make test): one torch thread per worker process,
    torch.set_num_threads(1)  # and per process a test starts (the CLI in a subprocess, --jobs workers)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


#: Modules whose tests start processes or train whole suites (seconds each). They run first, so that under
#: `pytest -n 2` the workers end together on short tests rather than one waiting for the other's last long one.
LONG_FIRST = (
    "tests/cli/test_long_runs.py",
    "tests/engine/test_distributed.py",
    "tests/running/test_runner.py",
    "tests/suite/test_shipped_suites.py",
    "tests/reporting/test_plots.py",
    "tests/cli/test_bench_cli.py",
    "tests/running/test_loggers.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Long modules first (a stable sort: each module's tests stay together, for its fixtures); skip
    ``gpu`` tests without CUDA (unless rehearsing them on the CPU)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in LONG_FIRST)
    if torch.cuda.is_available() or GPU_REHEARSAL:
        return
    skip = pytest.mark.skip(reason="needs CUDA (rehearse on the CPU with PROTOBENCH_GPU_TESTS_ON_CPU=1)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gpu() -> torch.device:
    """The device of a ``gpu`` test: CUDA, or the CPU in a rehearsal."""
    return torch.device("cpu") if GPU_REHEARSAL and not torch.cuda.is_available() else torch.device("cuda")


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    """Every test gets its own cache and data dir, and never sees the user's."""
    isolate_data_env(monkeypatch, tmp_path)


@pytest.fixture
def fmnist_dir(tmp_path) -> Path:
    """A folder holding tiny, format-exact Fashion-MNIST IDX files (200 train, 100 test)."""
    return write_fashion_mnist(tmp_path / "fmnist")


def minimal_record(**overrides) -> dict:
    """The smallest record the store's schema accepts (protobench/store/schema.py): a finished cell."""
    record = {
        "suite": "s",
        "method": "softmax",
        "dim": 2,
        "seed": 0,
        "status": "ok",
        "metrics": {"test_accuracy": 50.0},
    }
    record.update(overrides)
    return record


def tiny_suite(path: Path, **overrides) -> Path:
    """Write a fast Fashion-MNIST suite YAML at ``path`` (overrides replace top-level keys)."""
    suite = {
        "name": path.stem,
        "dataset": "fashion-mnist",
        "val_size": 40,
        "backbone": "smallcnn",
        "backbone_options": {"width": 8, "depth": 1, "patch": 4},
        "dims": [2, 4],
        "methods": ["softmax"],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05},
    }
    suite.update(overrides)
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``protobench ARGS`` in-process as the console script does: returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        from protobench.cli.main import main

        monkeypatch.setattr(sys, "argv", ["protobench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
