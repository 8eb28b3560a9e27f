"""Shared fixtures: an isolated cache, tiny Fashion-MNIST files, a tiny suite, and the CLI in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.data.fakefiles import isolate_data_env, write_fashion_mnist


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    """Every test gets its own cache and data dir, and never sees the user's."""
    isolate_data_env(monkeypatch, tmp_path)


@pytest.fixture
def fmnist_dir(tmp_path) -> Path:
    """A folder holding tiny, format-exact Fashion-MNIST IDX files (200 train, 100 test)."""
    return write_fashion_mnist(tmp_path / "fmnist")


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
