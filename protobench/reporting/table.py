"""What the report, its renderers and ``compare`` share (so none of them imports another): the metrics
a table knows, the ``Table`` of one suite and metric, which records of a cell count (``latest_setting``),
the notes on mixed provenance, and the best cells of a column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Metric:
    """How a metric is titled, which direction is best (None: neither) and how many decimals it shows."""

    title: str
    better: str | None = "higher"  # "higher", "lower" or None (no best is marked)
    digits: int = 3


#: Every metric the report knows by name; the one place for titles, precision and which way is better.
#: Other keys found in records are tabulated too, titled by their key, 3 decimals, no best marked.
METRICS: dict[str, Metric] = {
    "test_accuracy": Metric("final-epoch test accuracy (%)", "higher", 2),
    "test_accuracy_at_best_val": Metric("test accuracy at the best validation epoch (%)", "higher", 2),
    "val_accuracy": Metric("val_accuracy (final-epoch validation accuracy, %)", "higher", 2),
    "best_val_accuracy": Metric("best_val_accuracy (best validation accuracy over the epochs, %)", "higher", 2),
    "best_val_epoch": Metric("best_val_epoch (epoch of the best validation accuracy)", None, 1),
    "train_accuracy": Metric("train_accuracy (final-epoch training accuracy, %)", "higher", 2),
    "train_loss": Metric("train_loss (final-epoch training loss, lower = better)", "lower", 3),
    "train_images_per_second": Metric("train_images_per_second (training throughput, images/s)", "higher", 0),
    "nc1": Metric("nc1 (within / between class variability, lower = tighter)", "lower", 3),
    "class_mean_anchor_cosine": Metric(
        "class_mean_anchor_cosine (cosine of each class mean with its anchor, higher = better aligned)", "higher", 3
    ),
    "class_mean_cosine_mean": Metric(
        "class_mean_cosine_mean (mean cosine between class means, lower = more spread; a simplex has -1/(K-1))",
        "lower",
        3,
    ),
    "class_mean_cosine_std": Metric(
        "class_mean_cosine_std (spread of the cosines between class means; a simplex has 0)", None, 3
    ),
    "anchor_min_angle_degrees": Metric(
        "anchor_min_angle_degrees (smallest angle between two anchors, degrees, higher = more separated)", "higher", 3
    ),
    "ece": Metric("ece (expected calibration error, 15 bins, lower = better calibrated)", "lower", 3),
}
#: Fewer seeds than this: the paper column says "n < 3" instead of whether the paper's figure is in our
#: prediction interval.
PAPER_CHECK_MIN_SEEDS = 3
#: The tables a report shows without ``--metric``.
DEFAULT_METRICS = ("test_accuracy", "test_accuracy_at_best_val")
#: ``--metric`` names besides the record keys (the same names as ``protobench compare --metric``).
ALIASES = {"final": "test_accuracy", "val-selected": "test_accuracy_at_best_val"}
FORMATS = ("md", "csv", "latex", "html")
#: How captions name each ``--correction``: ``compare``'s and the notes of ``report --vs`` (docs/compare.md).
CORRECTION_NAMES = {"none": "uncorrected", "holm": "Holm", "bh": "Benjamini-Hochberg"}


def correction_rule(correction: str, size: int, which: str) -> str:
    """How p-values were corrected, as a caption says it: ``Holm-adjusted over the 28 test(s) of this table``, or
    ``no correction for multiple comparisons``; ``which`` names the family."""
    if correction == "none":
        return "no correction for multiple comparisons"
    return f"{CORRECTION_NAMES[correction]}-adjusted over the {size} test(s) of {which}"


def metric_info(key: str) -> Metric:
    """The title, direction and precision of ``key`` (a key no one described: its name, 3 decimals)."""
    return METRICS.get(key) or Metric(key, None, 3)


def record_value(record: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(whether the record has ``key`` at all, its value): looked up in ``metrics``, then ``diagnostics``."""
    metrics, diagnostics = record.get("metrics") or {}, record.get("diagnostics") or {}
    if metrics.get(key) is not None:
        return True, metrics[key]
    if key in diagnostics:
        return True, diagnostics[key]
    return key in metrics, None


def is_number(value: Any) -> bool:
    """True for an int or float (not a bool): a value a table can average."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Table:
    """One summary table of a suite and metric."""

    suite: str
    metric: str
    title: str
    cells: pd.DataFrame  # long form: method, column, mean, std, n, paper, paper_pi, status
    methods: list[str]
    columns: list[str]
    notes: list[str]


def latest_setting(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of one (method, column)'s records, those of the most recently finished setting (all its seeds)."""
    newest = max(records, key=lambda r: r.get("finished_at", ""))
    return [r for r in records if r.get("setting_hash") == newest.get("setting_hash")]


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """A note per kind of mixed provenance among ``records``: records made by older numerics than HEAD's
    (stale: first, and in capitals), several code commits, several versions, CPU-trained records from
    several CPU models (records made before the CPU was recorded don't count)."""
    from protobench.store.versions import is_stale

    notes = []
    if stale := sum(is_stale(r) for r in records):
        notes.append(
            f"STALE: {stale} record(s) made by older code than HEAD's (other numerics versions): "
            "`protobench run` retrains them, `protobench results check` lists them (docs/engine.md)"
        )
    commits = sorted({r.get("git_commit") or "unknown" for r in records})
    if len(commits) > 1:
        short = [c if c == "unknown" else c[:10] + ("-dirty" if c.endswith("-dirty") else "") for c in commits]
        notes.append(f"mixed code: records from {len(commits)} commits ({', '.join(short)})")
    versions = sorted({(r.get("versions") or {}).get("protobench", "unknown") for r in records})
    if len(versions) > 1:
        notes.append(f"mixed code: records from protobench versions {', '.join(versions)}")
    cpus = sorted({r["cpu"] for r in records if r.get("cpu") and str(r.get("device", "")).startswith("cpu")})
    if len(cpus) > 1:
        notes.append(
            f"mixed hosts: CPU records from {len(cpus)} CPU models ({'; '.join(cpus)}); "
            "numbers can differ in the last digits between them"
        )
    return notes


def best_cells(table: Table) -> set[tuple[str, str]]:
    """The (method, column) cells holding the best mean of their column, as shown (ties: all of them);
    none where the metric has no better direction or a column has fewer than two values."""
    info = metric_info(table.metric)
    if info.better is None:
        return set()
    best = set()
    ok = table.cells[table.cells["status"] == "ok"]
    for column in table.columns:
        here = ok[ok["column"] == column]
        if len(here) < 2:
            continue
        shown = {m: round(float(v), info.digits) for m, v in zip(here["method"], here["mean"], strict=True)}
        target = max(shown.values()) if info.better == "higher" else min(shown.values())
        best |= {(m, column) for m, v in shown.items() if v == target}
    return best
