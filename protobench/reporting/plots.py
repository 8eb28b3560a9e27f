"""Figures of one suite's records, as PNG and SVG: accuracy against the dimension or imbalance ratio,
shot-group accuracy, prototype assignment changes and training curves here; accuracy per class and the
saved embedding sample on the circle or sphere, by class name, in ``protobench.reporting.class_plots``
(docs/diagnostics.md). Like the tables, of each method x column only the newest
setting's "ok" records are shown (``tables.latest_setting``). matplotlib is imported when plotting.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protobench.reporting.figures import (
    LINESTYLES,
    MARKERS,
    SHOT_GROUPS,
    STYLE,
    Plots,
    Record,
    cell_detail,
    cell_label,
    cells_of,
    finite,
    in_cell,
    legend_outside,
    log_ticks,
    mean_std,
    metric_of,
    n_label,
    several_longtail_dims,
    shown_records,
)
from protobench.reporting.table import metric_info
from protobench.suite.definition import Suite


def make_plots(
    records: list[Record],
    suite_name: str,
    suite: Suite | None,
    out_dir: Path,
    results_root: Path,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Write every plot of ``suite_name`` that its records allow into ``out_dir`` as ``<suite>-<kind>[-<detail>].<ext>``
    in each of ``formats``; returns the paths written. Embedding samples are read from beside their records
    under ``results_root``; one that is missing or unreadable is skipped."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    from protobench.reporting.class_plots import plot_embeddings, plot_per_class

    shown = shown_records(records, suite_name)
    if not shown:
        return []
    order = list(suite.methods) if suite else []
    order += sorted({r["method"] for r in shown} - set(order))
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    styles = {m: (cmap(i % cmap.N), MARKERS[i % len(MARKERS)]) for i, m in enumerate(order)}
    methods = [m for m in order if any(r["method"] == m for r in shown)]
    ctx = Plots(plt, suite_name, shown, methods, styles, Path(out_dir), Path(results_root), tuple(formats))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        plot_accuracy(ctx, "test_accuracy", longtail=False)
        plot_accuracy(ctx, "test_accuracy_at_best_val", longtail=False, detail="val-selected")
        plot_shot_groups(ctx)
        plot_accuracy(ctx, "test_accuracy", longtail=True)
        plot_assignment_changes(ctx)
        plot_training_curves(ctx)
        plot_per_class(ctx)
        plot_embeddings(ctx)
    return ctx.written


# ---------------------------------------------------------------- selecting and aggregating


def errorbar_lines(ctx: Plots, ax: Any, series: list[tuple[str, str, str, dict[float, list[float]]]]) -> None:
    """Each series (name, method, linestyle, x -> values over seeds) as mean +- std per x; the series
    are spread a little apart on the log axis so that their error bars do not hide each other."""
    for i, (name, method, ls, points) in enumerate(series):
        xs = sorted(points)
        stats = [mean_std(points[x]) for x in xs]
        shift = 10 ** ((i - (len(series) - 1) / 2) * 0.006)
        color, marker = ctx.styles[method]
        style = {"color": color, "marker": marker, "ls": ls, "lw": 1.5, "capsize": 3}
        label = n_label(name, [len(points[x]) for x in xs])
        ax.errorbar([x * shift for x in xs], [m for m, _ in stats], yerr=[e for _, e in stats], label=label, **style)


# ---------------------------------------------------------------- accuracy against dim and ratio


def plot_accuracy(ctx: Plots, metric: str, longtail: bool, detail: str | None = None) -> None:
    """``metric`` per method, mean +- std over seeds, against d (balanced records) or against the
    imbalance ratio (long-tailed records; a line per method and dim when there are several dims)."""
    chosen = [r for r in ctx.shown if (r.get("imbalance_ratio") is not None) == longtail]
    if not (chosen := [r for r in chosen if metric_of(r, metric) is not None]):
        return
    dims = sorted({r["dim"] for r in chosen})
    series = []
    for method in ctx.methods:
        for dim in dims if longtail else [None]:
            points: dict[float, list[float]] = defaultdict(list)
            for r in chosen:
                if r["method"] == method and dim in (None, r["dim"]):
                    points[float(r["imbalance_ratio"]) if longtail else r["dim"]].append(metric_of(r, metric))
            name = f"{method} d={dim}" if longtail and len(dims) > 1 else method
            ls = LINESTYLES[dims.index(dim) % len(LINESTYLES)] if longtail else "-"
            if points:
                series.append((name, method, ls, points))
    fig, ax = ctx.plt.subplots(figsize=(8.5, 4.8))
    errorbar_lines(ctx, ax, series)
    log_ticks(ax, sorted({x for *_, points in series for x in points}))
    ax.set(xlabel="imbalance ratio n_max / n_min" if longtail else "embedding dimension d", ylabel="test accuracy (%)")
    against = " against imbalance" if longtail else ""
    ax.set_title(f"{ctx.suite_name}: {metric_info(metric).title}{against}\nmean ± std over seeds (n)")
    legend_outside(ax)
    ctx.save(fig, "accuracy-vs-ratio" if longtail else "accuracy-vs-dim", detail)


def plot_shot_groups(ctx: Plots) -> None:
    """Per ratio (and dim), bars of each method's many/medium/few-shot accuracy (groups by train count)."""
    longtail = [r for r in ctx.shown if r.get("imbalance_ratio") is not None and r.get("shot_groups")]
    with_dim = several_longtail_dims(longtail)
    for cell in cells_of(longtail):
        present = [m for m in ctx.methods if in_cell(longtail, cell, m)]
        fig, ax = ctx.plt.subplots(figsize=(max(6.0, 1.1 * len(present) + 2.5), 4.8))
        width = 0.8 / len(SHOT_GROUPS)
        for g, (group, label) in enumerate(SHOT_GROUPS.items()):
            stats = []
            for method in present:
                own = in_cell(longtail, cell, method)
                values = [finite((r["shot_groups"].get("by_count") or {}).get(group)) for r in own]
                values = [v for v in values if v is not None]  # an empty group is NaN
                stats.append(mean_std(values) if values else (math.nan, math.nan))
            x = np.arange(len(present)) + (g - (len(SHOT_GROUPS) - 1) / 2) * width
            ax.bar(x, [m for m, _ in stats], width, yerr=[s for _, s in stats], capsize=2, label=label,
                   color=ctx.plt.get_cmap("Set2")(g), edgecolor="0.3", lw=0.5)  # fmt: skip
            for at, (mean, _) in zip(x, stats, strict=True):
                if math.isnan(mean):
                    ax.text(at, 1, "no classes", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
        labels = [n_label(m, [len(in_cell(longtail, cell, m))]) for m in present]
        ax.set_xticks(range(len(present)), labels=labels, rotation=25, ha="right")
        ax.set(ylabel="test accuracy (%)", ylim=(0, 100))
        ax.grid(axis="x", visible=False)
        title = f"{ctx.suite_name}: test accuracy by shot group, imbalance ratio {cell[0]:g}"
        ax.set_title(title + (f", d={cell[1]}" if with_dim else "") + "\nmean ± std over seeds (n)")
        legend_outside(ax, title="classes by train images")
        ctx.save(fig, "shot-groups", cell_detail(cell, with_dim))


# ---------------------------------------------------------------- per-epoch history


def mean_over_seeds(records: list[Record], key: str) -> tuple[list[int], list[float]]:
    """Epochs and the mean over ``records`` (the seeds) of history ``key`` at each epoch that has it."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in records:
        for row in r.get("history") or []:
            if (value := finite(row.get(key))) is not None:
                by_epoch[int(row["epoch"])].append(value)
    epochs = sorted(by_epoch)
    return epochs, [float(np.mean(by_epoch[e])) for e in epochs]


def epoch_axis(ax: Any, records: Iterable[Record]) -> None:
    """An x axis of whole epochs; the epochs of one-epoch runs get a single tick, not fractions around it."""
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    epochs = {int(row["epoch"]) for r in records for row in r.get("history") or [] if "epoch" in row}
    if len(epochs) == 1:
        (epoch,) = epochs
        ax.set(xticks=[epoch], xlim=(epoch - 1, epoch + 1))


def plot_assignment_changes(ctx: Plots) -> None:
    """A panel per method whose history has ``assignment_changed``, a line per dim (mean over seeds)."""
    key = "assignment_changed"
    having = [
        m for m in ctx.methods if any(key in row for r in ctx.shown if r["method"] == m for row in r.get("history", []))
    ]
    if not having:
        return
    fig, axes = ctx.plt.subplots(1, len(having), figsize=(4.2 * len(having) + 1.0, 4.2), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], having, strict=True):
        own = [r for r in ctx.shown if r["method"] == method]
        cells = cells_of(own)
        for j, cell in enumerate(cells):
            epochs, means = mean_over_seeds(in_cell(own, cell), key)
            color, label = ctx.plt.get_cmap("viridis")(0.9 * j / max(1, len(cells) - 1)), cell_label(cell)
            if epochs:  # none where this dim's records predate the diagnostic
                ax.plot(epochs, means, marker="o", ms=3, color=color, label=n_label(label, [len(in_cell(own, cell))]))
        ax.set_title(method)
        epoch_axis(ax, own)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("classes re-assigned (mean over seeds)")
    fig.suptitle(f"{ctx.suite_name}: classes whose prototype assignment changed, per epoch", fontsize=11)
    ctx.save(fig, "assignment-changes")


def plot_training_curves(ctx: Plots) -> None:
    """Per column, train loss and test accuracy per epoch (mean over seeds), one line per method."""
    with_dim = several_longtail_dims(ctx.shown)
    for cell in cells_of(ctx.shown):
        fig, (loss_ax, acc_ax) = ctx.plt.subplots(1, 2, figsize=(12, 4.6))
        losses: list[float] = []
        for method in ctx.methods:
            if not (own := in_cell(ctx.shown, cell, method)):
                continue
            color, marker = ctx.styles[method]
            for ax, key in ((loss_ax, "train_loss"), (acc_ax, "test_accuracy")):
                epochs, means = mean_over_seeds(own, key)
                ax.plot(epochs, means, color=color, marker=marker, ms=4, label=n_label(method, [len(own)]))
                losses += means if key == "train_loss" else []
        positive = [v for v in losses if v > 0]
        if positive and max(positive) / min(positive) > 20:
            loss_ax.set_yscale("log")  # the heads' losses differ by orders of magnitude
        loss_ax.set_title("train loss" + (" (log scale)" if loss_ax.get_yscale() == "log" else ""))
        acc_ax.set_title("test accuracy (%)")
        for ax in (loss_ax, acc_ax):
            epoch_axis(ax, in_cell(ctx.shown, cell))
        legend_outside(acc_ax)
        fig.suptitle(f"{ctx.suite_name}: training curves at {cell_label(cell)}, mean over seeds", fontsize=11)
        ctx.save(fig, "training-curves", cell_detail(cell, with_dim))
