"""The record schema: what a record in the results store holds (``RECORD_KEYS``), and the check every
record read from the store passes (``check_record``) before anything uses it (docs/engine.md)."""

from __future__ import annotations

import math
from typing import Any

RECORD_KEYS = {
    "suite": "suite name",
    "dataset": "dataset name",
    "method": "the table row: a method name, or a suite's variant (config.method is then its method)",
    "dim": "embedding dimension d",
    "seed": "training seed",
    "imbalance_ratio": "n_max / n_min of the long-tailed training set, or null when balanced",
    "column": "the report column of the cell (dim, or ratio)",
    "status": "ok | n/a | error",
    "reason": "why a cell is n/a or failed",
    "traceback": "the traceback of a failed cell",
    "failed_epoch": "the epoch (1-based) a failed cell was training when it raised",
    "config": "the resolved configuration of the cell",
    "config_hash": "sha256 of config",
    "setting_hash": "sha256 of config without the seed",
    "numerics": "the numerics version of each part of the code that made the numbers (docs/engine.md)",
    "data": "the dataset's source, per-class counts of each split and class_names (where the dataset names them)",
    "metrics": "final-epoch and validation-selected accuracies, train loss, images/s",
    "per_class_accuracy": "final-epoch test accuracy per class (%)",
    "shot_groups": "long-tailed only: accuracy of many/medium/few-shot classes (two groupings)",
    "history": "one row per epoch: losses, accuracies, lr, images/s, method diagnostics",
    "method_hyperparameters": "the head's resolved hyperparameters",
    "diagnostics": "test-set geometry and calibration after the last epoch (docs/diagnostics.md)",
    "embeddings": "file name of the test-embedding sample saved beside the record (d <= 3)",
    "timings": "wall and training seconds",
    "checkpoint": "file name of the final checkpoint kept beside the record (--keep-checkpoints)",
    "versions": "python, torch, torchvision, protobench",
    "git_commit": "the protobench checkout's commit, if any (-dirty: uncommitted code, untracked files included)",
    "code_digest": "sha256 of protobench's *.py files and suites/*.yaml as they ran (docs/engine.md, Code identity)",
    "device": "the device the cell ran on",
    "cpu": "the host's CPU model (CPU-trained numbers reproduce on the same CPU model and thread count only)",
    "host": "cpu_model, cpu_capability (torch's instruction-set level), cpu_flags (vector flags), isa_limits "
    "(set in the environment), threads; on CUDA gpu, cuda_driver, cuda_runtime, cudnn",
    "prototype_digest": "sha256 of the fixed prototype matrix the cell trained with (float64); null without one",
    "cuda_graphs": "whether training steps were replayed from CUDA graphs (speed, not numbers)",
    "world_size": "data-parallel processes (torchrun ranks) that trained the cell together; 1 without torchrun",
    "finished_at": "UTC time the record was written",
    "reused_from": "the record (path in the store) this one copies: same config, trained once (docs/ablations.md)",
}


class UnreadableRecord(Exception):
    """A file in the store that cannot be used as a record; the message says why."""


def check_record(record: dict[str, Any]) -> None:
    """Check ``record`` against the schema: the identity keys, a known status, a finished cell's finite
    test accuracy, and the type (and finiteness) of every figure it holds; ``UnreadableRecord`` says
    what is wrong. A record read from the store is checked before anything uses it."""
    for key, kind in (("suite", str), ("method", str), ("dim", int), ("seed", int), ("status", str)):
        if key not in record:
            raise UnreadableRecord(f"no '{key}'")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            raise UnreadableRecord(f"'{key}' is {_kind(record[key])}, not {kind.__name__}")
    if record["status"] not in ("ok", "n/a", "error"):
        raise UnreadableRecord(f"status '{record['status']}' is none of ok, n/a, error")
    for key in ("config", "metrics", "diagnostics", "numerics", "data"):
        if key in record and not isinstance(record[key], dict):
            raise UnreadableRecord(f"'{key}' is {_kind(record[key])}, not an object")
    if record["status"] == "ok" and "test_accuracy" not in record.get("metrics", {}):
        raise UnreadableRecord("a finished record without metrics.test_accuracy")
    if record["status"] == "ok" and record["metrics"]["test_accuracy"] is None:
        raise UnreadableRecord("metrics.test_accuracy is null")
    for key in ("metrics", "diagnostics"):
        for name, value in record.get(key, {}).items():
            _check_number(f"{key}.{name}", value)
    for key in ("per_class_accuracy", "history"):
        if key in record and not isinstance(record[key], list):
            raise UnreadableRecord(f"'{key}' is {_kind(record[key])}, not a list")
    for index, value in enumerate(record.get("per_class_accuracy", [])):
        _check_number(f"per_class_accuracy[{index}]", value)
    for index, row in enumerate(record.get("history", [])):
        if not isinstance(row, dict):
            raise UnreadableRecord(f"history[{index}] is {_kind(row)}, not an object")
        for name, value in row.items():
            _check_number(f"history[{index}].{name}", value)


def _check_number(where: str, value: Any) -> None:
    """A figure is a finite number or null."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnreadableRecord(f"{where} is {_kind(value)}, not a number")
    if not math.isfinite(value):
        raise UnreadableRecord(f"{where} is {value}, not a finite number")


def _kind(value: Any) -> str:
    """How a JSON value reads in an error: 'a str', 'null'."""
    return "null" if value is None else f"a {type(value).__name__}"
