"""What the training benchmarks share: the options that pick a cell's setting, and a training subset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_setting_options(parser: argparse.ArgumentParser, *, suite: str, device: str, device_help: str) -> None:
    """--suite, --dim, --methods, --train-subset, --device and --data-dir."""
    parser.add_argument("--suite", default=suite, help="suite whose data, backbone, batch and recipe are used")
    parser.add_argument("--dim", type=int, default=16, help="embedding dimension (ETF needs d >= K-1)")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: the suite's)")
    parser.add_argument("--train-subset", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--device", default=device, help=device_help)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the suite's dataset is")


def keep_first_training_images(data: Any, count: int | None) -> None:
    """Train on the first ``count`` images of ``data``'s training split only (None: all of them)."""
    import torch

    if count and data.train is not None and count < len(data.train):
        data.train = data.train.subset(torch.arange(count))
