"""Figures whose parts are the dataset's classes, each class shown by its name (``results.class_names``:
the names a record stores, else those its dataset defines in code, else ``class k``): each method's test
accuracy per class, and the saved test-embedding sample on the circle or sphere coloured by class
(docs/diagnostics.md). ``plots.make_plots`` calls them with its shared ``Plots``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from protobench.reporting.figures import (
    Plots,
    Record,
    cell_detail,
    cell_label,
    cells_of,
    finite,
    in_cell,
    metric_of,
    n_label,
    several_longtail_dims,
)
from protobench.store.records import class_names

#: At d = 2, class c's features are drawn at radius RING_START + RING_SPAN * c / (K - 1) (``ring_radius``).
RING_START, RING_SPAN = 1.1, 0.5
#: Per-class heatmaps print each value up to this many classes and name the classes up to NAMED_CLASSES.
ANNOTATED_CLASSES, NAMED_CLASSES = 20, 100


# ---------------------------------------------------------------- accuracy per class


def mean_per_class(records: list[Record], k: int) -> np.ndarray:
    """The mean over ``records`` (the seeds) of each class's final-epoch test accuracy; NaN where none has one."""
    total, count = np.zeros(k), np.zeros(k)
    for r in records:
        for c, value in enumerate(r.get("per_class_accuracy") or []):
            if c < k and (value := finite(value)) is not None:
                total[c] += value
                count[c] += 1
    return np.divide(total, count, out=np.full(k, np.nan), where=count > 0)


def class_labels(record: Record, k: int, longtail: bool) -> list[str]:
    """The classes' names; in a long-tailed column with their training images, e.g. ``Bag (54)``."""
    names = class_names(record, k)
    train = ((record.get("data") or {}).get("counts") or {}).get("train") or []
    if longtail and len(train) == k:
        return [f"{name} ({n})" for name, n in zip(names, train, strict=True)]
    return names


def plot_per_class(ctx: Plots) -> None:
    """Per column (dim, or ratio), a heatmap of each method's final-epoch test accuracy per class, mean over
    seeds: rows are methods, columns the classes by name (long-tailed: with their train images)."""
    having = [r for r in ctx.shown if r.get("per_class_accuracy")]
    with_dim = several_longtail_dims(having)
    for cell in cells_of(having):
        k = max(len(r["per_class_accuracy"]) for r in in_cell(having, cell))
        present = [m for m in ctx.methods if in_cell(having, cell, m)]
        values = np.array([mean_per_class(in_cell(having, cell, m), k) for m in present])
        fig, ax = ctx.plt.subplots(figsize=(min(24.0, max(6.0, 0.6 * k + 3.2)), max(3.0, 0.3 * len(present) + 2.0)))
        cmap = ctx.plt.get_cmap("viridis").with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        if k <= ANNOTATED_CLASSES:
            for (i, c), value in np.ndenumerate(values):
                text, color = ("-", "0.3") if np.isnan(value) else (f"{value:.0f}", "white" if value < 60 else "black")
                ax.text(c, i, text, ha="center", va="center", fontsize=8, color=color)
        ax.set_yticks(range(len(present)), labels=[n_label(m, [len(in_cell(having, cell, m))]) for m in present])
        longtail = cell[0] is not None
        if k <= NAMED_CLASSES:
            labels = class_labels(in_cell(having, cell)[0], k, longtail)
            ax.set_xticks(range(k), labels=labels, rotation=40, ha="right", rotation_mode="anchor",
                          fontsize=8 if k <= 30 else 6)  # fmt: skip
        else:
            ax.set_xlabel(f"class index ({k} classes, too many to name)")
        if longtail:
            ax.set_xlabel("class (train images)" if k <= NAMED_CLASSES else ax.get_xlabel())
        ax.grid(False)
        fig.colorbar(image, ax=ax, label="test accuracy (%)", fraction=0.04, pad=0.02)
        title = f"{ctx.suite_name}: final-epoch test accuracy per class at {cell_label(cell)}"
        ax.set_title(title + "\nmean over seeds (n)")
        ctx.save(fig, "per-class-accuracy", cell_detail(cell, with_dim))


# ---------------------------------------------------------------- embeddings on the circle or sphere


def load_embeddings(path: Path) -> dict[str, Any] | None:
    """features (N x d, d = 2 or 3), labels (N,) and anchors (K x d or None); None when unusable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            features = np.asarray(npz["features"], dtype=float)
            labels = np.asarray(npz["labels"]).astype(int)
            anchors = np.asarray(npz["anchors"], dtype=float) if "anchors" in npz.files else None
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile):
        return None  # missing, not an archive, a plain .npy (no context manager), or damaged
    if features.ndim != 2 or features.shape[1] not in (2, 3) or labels.shape != (features.shape[0],):
        return None
    if anchors is not None and (anchors.ndim != 2 or anchors.shape[1] != features.shape[1]):
        anchors = None
    keep = np.isfinite(features).all(axis=1) & (np.linalg.norm(features, axis=1) > 0) & (labels >= 0)
    if not keep.any():
        return None
    return {"features": features[keep], "labels": labels[keep], "anchors": anchors}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def plot_embeddings(ctx: Plots) -> None:
    """Per (method, ratio, dim <= 3), the first seed's saved test features on the unit circle or sphere."""
    for method in ctx.methods:
        own = [r for r in ctx.shown if r["method"] == method and r["dim"] <= 3]
        for cell in cells_of(own):
            for record in sorted(in_cell(own, cell), key=lambda r: r["seed"]):
                # beside the record (protobench/store/records.py: embeddings_path), named by its ``embeddings`` key
                name = Path(str(record.get("embeddings") or "")).name
                if name and (sample := load_embeddings(ctx.results_root / record["suite"] / method / name)):
                    detail = f"d{cell[1]}-{method}" + (f"-r{cell[0]:g}" if cell[0] is not None else "")
                    ctx.save(embedding_figure(ctx, sample, record), "embeddings", detail)
                    break


def ring_radius(c: int, classes: int) -> float:
    """At d = 2, where class ``c``'s features are drawn: on their own ring outside the unit circle, at their angle
    (a unit feature in 2-d is its angle alone; on one shared circle the classes hide each other)."""
    return RING_START + RING_SPAN * c / max(classes - 1, 1)


def embedding_figure(ctx: Plots, sample: dict[str, Any], record: Record) -> Any:
    """Unit features coloured by class on the circle (d=2, a ring per class) or sphere (d=3), anchors as large
    markers on the unit circle or sphere; the legend names the classes (``results.class_names``)."""
    features, labels, anchors = unit_rows(sample["features"]), sample["labels"], sample["anchors"]
    d = features.shape[1]
    classes = int(max(labels.max() + 1, 0 if anchors is None else anchors.shape[0]))
    names = class_names(record, classes)
    cmap = ctx.plt.get_cmap("tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo")
    colors = [cmap(c % cmap.N if classes <= 20 else c / (classes - 1)) for c in range(classes)]
    fig = ctx.plt.figure(figsize=(7.2, 6.0))
    if d == 2:
        ax = fig.add_subplot()
        ax.plot(np.cos(theta := np.linspace(0, 2 * np.pi, 400)), np.sin(theta), color="0.5", lw=1, zorder=1)
        edge = RING_START + RING_SPAN + 0.08
        ax.set(aspect="equal", xlim=(-edge, edge), ylim=(-edge, edge))
        ax.set_axis_off()  # radius carries no value here: only the angle does
        extra: dict[str, Any] = {}
    else:
        ax = fig.add_subplot(projection="3d", computed_zorder=False)  # anchors drawn over the points
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.75", lw=0.4, alpha=0.4)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
        ax.set_box_aspect((1, 1, 1), zoom=1.3)
        ax.set_axis_off()
        extra = {"depthshade": False}
    for c in range(classes):
        if len(points := features[labels == c]):
            points = points * ring_radius(c, classes) if d == 2 else points
            ax.scatter(*points.T, s=10, alpha=0.6, color=colors[c], linewidths=0, zorder=2, label=names[c])
    if anchors is not None:
        ax.scatter(*unit_rows(anchors).T, s=170, c=colors[: len(anchors)], edgecolors="black", linewidths=1.4,
                   zorder=4, label="anchors (normalised)", **extra)  # fmt: skip
    ratio = "" if record.get("imbalance_ratio") is None else f", imbalance ratio {record['imbalance_ratio']:g}"
    title = f"{ctx.suite_name}: {record['method']} test embeddings, d={d}{ratio}, seed {record['seed']}\n"
    title += f"{len(features)} test features on the unit {'circle' if d == 2 else 'sphere'}"
    if (accuracy := metric_of(record, "test_accuracy")) is not None:
        title += f"; test accuracy {accuracy:.2f}%"
    if d == 2:
        title += "\ndrawn at their angle, each class on its own ring outside the circle"
    ax.set_title(title)
    if classes <= 20:
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            anchor = text.get_text().startswith("anchors")  # a white marker: the anchors take their class's colour
            handle.set(alpha=1.0, sizes=[80 if anchor else 30], **({"facecolor": "white"} if anchor else {}))
    return fig
