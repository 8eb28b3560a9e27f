"""The results store as tidy tables (docs/export.md): one row per record, one row per record and epoch
(``history``), or one row per record and class (``classes``), with stable column names and types.

Every record file of the store becomes a row, whatever its state: ``status`` says ok, n/a, error or
unreadable, ``stale`` whether older numerics than HEAD's made it, and ``current_setting`` whether it
belongs to the newest setting of its cell, the records ``report`` and ``compare`` tabulate. Nothing
is dropped, so a filter is the reader's choice, and nothing here writes to the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from protobench.reporting.table import latest_setting
from protobench.store.records import class_names, load_record, record_files
from protobench.store.schema import UnreadableRecord


@dataclass(frozen=True)
class Column:
    """One column of an export: its pandas dtype and what it holds."""

    dtype: str
    about: str


#: The identity of a row: which cell of which suite.
IDENTITY: dict[str, Column] = {
    "suite": Column("string", "suite name"),
    "dataset": Column("string", "dataset name"),
    "method": Column("string", "the head that trained (a registered method)"),
    "variant": Column("string", "the table row: the suite's variant name, or the method's own name"),
    "dim": Column("Int64", "embedding dimension d"),
    "seed": Column("Int64", "training seed"),
    "imbalance_ratio": Column("Float64", "n_max / n_min of the long-tailed training set; empty when balanced"),
    "column": Column("string", "the report column of the cell (the dim, or the ratio)"),
}
#: The state of a record: what the store makes of it.
STATE: dict[str, Column] = {
    "status": Column("string", "ok, n/a, error (a failed cell) or unreadable (not a valid record file)"),
    "reason": Column("string", "why a cell is n/a or failed, or why the file is unreadable"),
    "failed_epoch": Column("Int64", "the epoch (1-based) a failed cell was training"),
    "stale": Column("boolean", "made by older numerics than HEAD's for its cell (run retrains it)"),
    "stale_parts": Column("string", "the parts whose version moved, e.g. 'method/hpn 1 -> 2'"),
    "current_setting": Column("boolean", "of its cell's newest setting: the records report and compare use"),
}
#: The recipe, read from the record's resolved config.
RECIPE: dict[str, Column] = {
    "backbone": Column("string", "backbone name"),
    "loss": Column("string", "balanced, or the long-tailed loss"),
    "epochs": Column("Int64", "training epochs"),
    "batch_size": Column("Int64", "training batch size"),
    "optimizer": Column("string", "optimizer"),
    "lr": Column("Float64", "peak learning rate"),
    "weight_decay": Column("Float64", "weight decay"),
    "momentum": Column("Float64", "SGD momentum"),
    "schedule": Column("string", "learning-rate schedule"),
    "warmup_epochs": Column("Float64", "linear warm-up epochs"),
    "mixup_alpha": Column("Float64", "mixup's alpha (0: off)"),
    "precision": Column("string", "fp32, bf16, ... as the cell trained"),
    "method_options": Column("string", "the method's options as JSON"),
}
#: Final figures of a finished cell (``metrics`` and ``diagnostics`` of the record; docs/diagnostics.md).
FIGURES: dict[str, Column] = {
    "test_accuracy": Column("Float64", "final-epoch test accuracy (%)"),
    "test_accuracy_at_best_val": Column("Float64", "test accuracy at the best validation epoch (%)"),
    "val_accuracy": Column("Float64", "final-epoch validation accuracy (%)"),
    "best_val_accuracy": Column("Float64", "best validation accuracy over the epochs (%)"),
    "best_val_epoch": Column("Int64", "epoch of the best validation accuracy"),
    "train_accuracy": Column("Float64", "final-epoch training accuracy (%)"),
    "train_loss": Column("Float64", "final-epoch training loss"),
    "train_images_per_second": Column("Float64", "training throughput (images/s)"),
    "nc1": Column("Float64", "within / between class variability of test features"),
    "ece": Column("Float64", "expected calibration error, 15 bins"),
    "class_mean_cosine_mean": Column("Float64", "mean cosine between class means"),
    "class_mean_cosine_std": Column("Float64", "spread of the cosines between class means"),
    "class_mean_anchor_cosine": Column("Float64", "cosine of each class mean with its anchor, averaged"),
    "anchor_min_angle_degrees": Column("Float64", "smallest angle between two prototypes (degrees)"),
    "assignment_changes": Column("Float64", "classes re-assigned to another prototype, summed over the epochs"),
    "final_rep_proto_cosine": Column("Float64", "last epoch's mean cosine of class representatives with prototypes"),
    "many_shot_accuracy": Column("Float64", "long-tailed: accuracy of the many-shot classes (by train count)"),
    "medium_shot_accuracy": Column("Float64", "long-tailed: accuracy of the medium-shot classes"),
    "few_shot_accuracy": Column("Float64", "long-tailed: accuracy of the few-shot classes"),
}
#: Where and by what code the numbers were made.
PROVENANCE: dict[str, Column] = {
    "git_commit": Column("string", "the checkout's commit (-dirty: uncommitted code)"),
    "numerics": Column("string", "the numerics version of each part, as JSON (empty: version 1 of every part)"),
    "device": Column("string", "the device the cell ran on"),
    "cpu": Column("string", "the host's CPU model"),
    "cpu_capability": Column("string", "the CPU instruction-set level torch's kernels used (AVX2, AVX512...)"),
    "threads": Column("Int64", "torch's CPU threads"),
    "gpu": Column("string", "the GPU's name, driver and cuDNN (CUDA records)"),
    "code_digest": Column("string", "sha256 of protobench's source as it ran (docs/engine.md, Code identity)"),
    "prototype_digest": Column("string", "sha256 of the fixed prototype matrix the cell trained with"),
    "cuda_graphs": Column("boolean", "training steps replayed from CUDA graphs"),
    "world_size": Column("Int64", "data-parallel processes that trained the cell"),
    "python_version": Column("string", "Python version"),
    "torch_version": Column("string", "torch version"),
    "protobench_version": Column("string", "protobench version"),
    "wall_seconds": Column("Float64", "the cell's wall time (s)"),
    "train_seconds": Column("Float64", "the cell's training time (s)"),
    "finished_at": Column("datetime64[ns, UTC]", "when the record was written"),
    "config_hash": Column("string", "sha256 of the resolved config"),
    "setting_hash": Column("string", "sha256 of the config without the seed"),
    "reused_from": Column("string", "the record this one copies (same config, trained once)"),
    "path": Column("string", "the record file"),
}
#: Every column of ``records_table`` but the per-class ones, in order.
RECORD_COLUMNS: dict[str, Column] = {**IDENTITY, **STATE, **RECIPE, **FIGURES, **PROVENANCE}
#: The prefix of the per-class accuracy columns of ``records_table`` (one per class name).
CLASS_PREFIX = "class_accuracy:"
#: The columns of ``classes_table`` after the identity and state columns.
CLASS_COLUMNS: dict[str, Column] = {
    "class_index": Column("Int64", "the class's index"),
    "class_name": Column("string", "the class's name (class k where the dataset names none)"),
    "accuracy": Column("Float64", "final-epoch test accuracy of the class (%)"),
    "train_count": Column("Int64", "training images of the class"),
    "path": PROVENANCE["path"],
}
#: The columns of ``history_table`` after the identity and state columns; then every other history key.
HISTORY_COLUMNS: dict[str, Column] = {
    "epoch": Column("Int64", "epoch, 1-based"),
    "lr": Column("Float64", "learning rate at the epoch's end"),
    "train_loss": Column("Float64", "mean training loss of the epoch"),
    "train_accuracy": Column("Float64", "training accuracy of the epoch (%)"),
    "val_accuracy": Column("Float64", "validation accuracy after the epoch (%)"),
    "test_accuracy": Column("Float64", "test accuracy after the epoch (%)"),
    "images_per_second": Column("Float64", "training throughput of the epoch"),
    "assignment_changed": Column("Float64", "classes re-assigned at the epoch's end (matching heads)"),
    "rep_proto_cosine": Column("Float64", "mean cosine of class representatives with their prototypes"),
    "path": PROVENANCE["path"],
}
TABLES = ("records", "classes", "history")


@dataclass
class Entry:
    """A record file of the store: its path, and the record or why it cannot be read."""

    path: Path
    record: dict[str, Any] | None
    problem: str | None = None


def read_store(results: Path, suites: Iterable[str] | None = None) -> list[Entry]:
    """Every record file under ``results`` (of ``suites`` when given), readable or not, in path order."""
    entries = []
    for path in record_files(Path(results), list(suites) if suites else None):
        try:
            entries.append(Entry(path, load_record(path)))
        except UnreadableRecord as why:
            entries.append(Entry(path, None, str(why)))
    return entries


def records_table(entries: list[Entry], per_class: bool = True) -> pd.DataFrame:
    """One row per record file: ``RECORD_COLUMNS`` then, with ``per_class``, a ``class_accuracy:<name>`` column
    per class name met (empty where a record's dataset has no such class)."""
    rows, class_columns = [], {}
    for entry, state in zip(entries, _states(entries), strict=True):
        row = {**_identity(entry), **state, **_recipe(entry.record), **_figures(entry.record)}
        row.update(_provenance(entry))
        if per_class and entry.record is not None and entry.record.get("per_class_accuracy"):
            accuracies = entry.record["per_class_accuracy"]
            for name, value in zip(class_names(entry.record, len(accuracies)), accuracies, strict=True):
                class_columns[CLASS_PREFIX + name] = Column("Float64", f"final-epoch test accuracy of {name} (%)")
                row[CLASS_PREFIX + name] = value
        rows.append(row)
    return _frame(rows, {**RECORD_COLUMNS, **class_columns})


def classes_table(entries: list[Entry]) -> pd.DataFrame:
    """One row per finished record and class: identity, state, then ``CLASS_COLUMNS``."""
    rows = []
    for entry, state in zip(entries, _states(entries), strict=True):
        record = entry.record
        if record is None or not record.get("per_class_accuracy"):
            continue
        accuracies = record["per_class_accuracy"]
        counts = ((record.get("data") or {}).get("counts") or {}).get("train") or []
        for index, (name, value) in enumerate(zip(class_names(record, len(accuracies)), accuracies, strict=True)):
            count = counts[index] if index < len(counts) else None
            rows.append({**_identity(entry), **state, "class_index": index, "class_name": name,
                         "accuracy": value, "train_count": count, "path": str(entry.path)})  # fmt: skip
    return _frame(rows, {**IDENTITY, **STATE, **CLASS_COLUMNS})


def history_table(entries: list[Entry]) -> pd.DataFrame:
    """One row per record and epoch: identity, state, ``HISTORY_COLUMNS``, then any other history key (sorted)."""
    rows, extra = [], {}
    for entry, state in zip(entries, _states(entries), strict=True):
        for epoch in (entry.record or {}).get("history") or []:
            for key in epoch.keys() - HISTORY_COLUMNS.keys():
                extra[key] = Column("Float64", f"the history's {key}")
            rows.append({**_identity(entry), **state, **epoch, "path": str(entry.path)})
    return _frame(rows, {**IDENTITY, **STATE, **HISTORY_COLUMNS, **dict(sorted(extra.items()))})


def _frame(rows: list[dict[str, Any]], columns: dict[str, Column]) -> pd.DataFrame:
    """``rows`` as a DataFrame with exactly ``columns``, in order and of their dtypes (also when empty)."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for name, column in columns.items():
        if column.dtype.startswith("datetime"):
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype(column.dtype)
        else:
            frame[name] = frame[name].astype(column.dtype)
    return frame


def _states(entries: list[Entry]) -> Iterable[dict[str, Any]]:
    """Each entry's state columns. ``current_setting`` groups as ``report`` does: the readable records of
    one (suite, row, column), of which ``tables.latest_setting`` keeps the newest setting's."""
    from protobench.store.versions import stale_parts

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.record is not None:
            record = entry.record
            groups.setdefault((record["suite"], record["method"], record.get("column", "")), []).append(record)
    current = {id(r) for group in groups.values() for r in latest_setting(group)}
    for entry in entries:
        record = entry.record
        if record is None:
            yield {"status": "unreadable", "reason": entry.problem, "failed_epoch": None, "stale": None,
                   "stale_parts": None, "current_setting": False}  # fmt: skip
            continue
        parts = stale_parts(record)
        yield {"status": record["status"], "reason": record.get("reason"), "failed_epoch": record.get("failed_epoch"),
               "stale": bool(parts), "stale_parts": ", ".join(parts) or None,
               "current_setting": id(record) in current}  # fmt: skip


def _identity(entry: Entry) -> dict[str, Any]:
    """The identity columns; for an unreadable file, what its path says (``<store>/<suite>/<row>/<cell>.json``)."""
    record = entry.record
    if record is None:
        return {"suite": entry.path.parent.parent.name, "variant": entry.path.parent.name}
    config = record.get("config") or {}
    return {
        "suite": record["suite"],
        "dataset": record.get("dataset"),
        "method": config.get("method", record["method"]),
        "variant": record["method"],
        "dim": record["dim"],
        "seed": record["seed"],
        "imbalance_ratio": record.get("imbalance_ratio"),
        "column": record.get("column"),
    }


def _recipe(record: dict[str, Any] | None) -> dict[str, Any]:
    config = (record or {}).get("config") or {}
    train = config.get("train") or {}
    options = config.get("method_options")
    return {
        "backbone": config.get("backbone"),
        "loss": config.get("loss"),
        **{key: train.get(key) for key in ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum",
                                           "schedule", "warmup_epochs", "mixup_alpha")},
        "precision": config.get("precision"),
        "method_options": None if options is None else json.dumps(options, sort_keys=True),
    }  # fmt: skip


def _figures(record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    metrics, diagnostics = record.get("metrics") or {}, record.get("diagnostics") or {}
    row = {key: metrics.get(key, diagnostics.get(key)) for key in FIGURES}
    history = record.get("history") or []
    changes = [epoch["assignment_changed"] for epoch in history if epoch.get("assignment_changed") is not None]
    row["assignment_changes"] = sum(changes) if changes else None
    row["final_rep_proto_cosine"] = history[-1].get("rep_proto_cosine") if history else None
    by_count = (record.get("shot_groups") or {}).get("by_count") or {}
    for group in ("many", "medium", "few"):
        value = by_count.get(group)
        row[f"{group}_shot_accuracy"] = None if value is None or value != value else value  # NaN: an empty group
    return row


def _provenance(entry: Entry) -> dict[str, Any]:
    record = entry.record or {}
    versions, timings = record.get("versions") or {}, record.get("timings") or {}
    from protobench.store.host import host_key

    numerics = record.get("numerics")
    host = record.get("host") if isinstance(record.get("host"), dict) else {}  # records from before host: none
    return {
        "git_commit": record.get("git_commit"),
        "numerics": None if numerics is None else json.dumps(numerics, sort_keys=True),
        "device": record.get("device"),
        "cpu": record.get("cpu"),
        "cpu_capability": host.get("cpu_capability"),
        "threads": host.get("threads"),
        "gpu": host_key(record) if host.get("gpu") else None,
        "code_digest": record.get("code_digest"),
        "prototype_digest": record.get("prototype_digest"),
        "cuda_graphs": record.get("cuda_graphs"),
        "world_size": record.get("world_size"),
        "python_version": versions.get("python"),
        "torch_version": versions.get("torch"),
        "protobench_version": versions.get("protobench"),
        "wall_seconds": timings.get("wall_seconds"),
        "train_seconds": timings.get("train_seconds"),
        "finished_at": record.get("finished_at"),
        "config_hash": record.get("config_hash"),
        "setting_hash": record.get("setting_hash"),
        "reused_from": record.get("reused_from"),
        "path": str(entry.path),
    }


#: How each format writes a table to a path (parquet needs the optional pyarrow).
WRITERS: dict[str, Callable[[pd.DataFrame, Any], None]] = {
    "csv": lambda frame, target: frame.to_csv(target, index=False),
    "jsonl": lambda frame, target: frame.to_json(target, orient="records", lines=True, date_format="iso"),
    "parquet": lambda frame, target: frame.to_parquet(target, index=False),
}
