"""What every figure of protobench.reporting.plots and protobench.reporting.class_plots shares: the style, the ``Plots``
context of one suite's figures, and the small helpers that pick and label records (docs/diagnostics.md)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protobench.reporting.table import latest_setting

#: rcParams of every figure: a fixed SVG id salt and text kept as text, so SVGs are stable and searchable.
STYLE = {
    "svg.hashsalt": "protobench",
    "svg.fonttype": "none",
    "savefig.dpi": 120,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "axes.titlesize": 10,
}
#: Per format, the savefig metadata that would otherwise carry the time of writing.
STABLE_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}
SHOT_GROUPS = {"many": "many (> 100)", "medium": "medium (20-100)", "few": "few (< 20)"}
MARKERS = "osD^vPX*h<>p"
LINESTYLES = ("-", "--", ":", "-.")  # per dim of a long-tailed suite
Record = dict[str, Any]
Cell = tuple[float | None, int]  # (imbalance ratio, dim)


@dataclass
class Plots:
    """What every plot of one suite shares, and the files written so far."""

    plt: Any
    suite_name: str
    shown: list[Record]
    methods: list[str]
    styles: dict[str, tuple[Any, str]]
    out_dir: Path
    results_root: Path
    formats: tuple[str, ...]
    written: list[Path] = field(default_factory=list)

    def save(self, fig: Any, kind: str, detail: str | None = None) -> None:
        """Write ``fig`` as ``<suite>-<kind>[-<detail>].<ext>`` in every format, then close it."""
        stem = f"{self.suite_name}-{kind}" + (f"-{detail}" if detail else "")
        try:
            fig.tight_layout()
            for ext in self.formats:
                path = self.out_dir / f"{stem}.{ext}"
                fig.savefig(path, format=ext, bbox_inches="tight", metadata=STABLE_METADATA.get(ext))
                self.written.append(path)
        finally:
            self.plt.close(fig)


def shown_records(records: Iterable[Record], suite_name: str) -> list[Record]:
    """The "ok" records of the newest setting of each (method, column) of ``suite_name``."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        if r.get("suite") == suite_name:
            groups[r["method"], str(r["column"])].append(r)
    return [r for group in groups.values() for r in latest_setting(group) if r.get("status") == "ok"]


def finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def metric_of(record: Record, key: str) -> float | None:
    return finite((record.get("metrics") or {}).get(key))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), as the tables report them."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def n_label(name: str, counts: Iterable[int]) -> str:
    """``dl2pa (n=5)``, or ``dl2pa (n=3-5)`` when the number of seeds differs between points."""
    counts = sorted(set(counts))
    return f"{name} (n={counts[0]})" if len(counts) == 1 else f"{name} (n={counts[0]}-{counts[-1]})"


def cells_of(records: Iterable[Record]) -> list[Cell]:
    """The (ratio, dim) cells of ``records``: balanced first, then by ratio and dim."""
    return sorted({(r.get("imbalance_ratio"), r["dim"]) for r in records}, key=lambda c: (c[0] or 0.0, c[1]))


def in_cell(records: Iterable[Record], cell: Cell, method: str | None = None) -> list[Record]:
    return [r for r in records if (r.get("imbalance_ratio"), r["dim"]) == cell and method in (None, r["method"])]


def cell_label(cell: Cell) -> str:
    return f"d={cell[1]}" if cell[0] is None else f"ratio {cell[0]:g}, d={cell[1]}"


def cell_detail(cell: Cell, with_dim: bool) -> str:
    """A file-name part: ``d16``, or ``r100`` (``r100-d16`` when the long-tailed records have several dims)."""
    ratio, dim = cell
    return f"d{dim}" if ratio is None else f"r{ratio:g}" + (f"-d{dim}" if with_dim else "")


def several_longtail_dims(records: Iterable[Record]) -> bool:
    return len({r["dim"] for r in records if r.get("imbalance_ratio") is not None}) > 1


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def log_ticks(ax: Any, values: Sequence[float]) -> None:
    """A log-x axis whose ticks are exactly ``values``."""
    from matplotlib.ticker import NullLocator

    ax.set(xscale="log", xlim=(min(values) / 1.25, max(values) * 1.25))
    ax.set_xticks(list(values), labels=[f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
