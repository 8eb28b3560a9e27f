"""What the benchmarks share: the options that pick a cell's setting, a training subset, the JSON they write."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from protobench.core.errors import UserError


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


def write_json(path: Path, result: dict[str, Any], flag: str) -> None:
    """Write a benchmark's figures to ``path`` (given as ``flag``) and say so; an unwritable path is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot write ({error.strerror}); give a path you can write") from None
    print(f"wrote {path}")
