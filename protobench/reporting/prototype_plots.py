"""The figure of one prototype set (``protobench prototypes show --plot``): the points on the circle (d = 2)
or the sphere (d = 3), else the histogram of pairwise cosines against the simplex bound -1/(K-1).
matplotlib is imported when plotting."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_prototypes(P: np.ndarray, path: Path, title: str) -> None:
    """Write the figure of the K x d unit rows ``P`` to ``path`` (PNG); an OSError of the write propagates."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    K, d = P.shape
    if d == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        theta = np.linspace(0, 2 * np.pi, 400)
        ax.plot(np.cos(theta), np.sin(theta), color="0.7", lw=1)
        ax.scatter(P[:, 0], P[:, 1], s=18, zorder=3)
        ax.set_aspect("equal")
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
    elif d == 3:
        fig = plt.figure(figsize=(6, 6))
        ax = fig.add_subplot(projection="3d")
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 40), np.linspace(0, np.pi, 20))
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.5)
        ax.scatter(P[:, 0], P[:, 1], P[:, 2], s=18, depthshade=True)
        ax.set_box_aspect((1, 1, 1))
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        cos = (P @ P.T)[np.triu_indices(K, k=1)]
        ax.hist(cos, bins=min(100, max(10, cos.size // 20)))
        ax.axvline(-1.0 / (K - 1), color="red", ls="--", lw=1, label="simplex -1/(K-1)")
        ax.set_xlabel("pairwise cosine")
        ax.set_ylabel("pairs")
        ax.legend()
    ax.set_title(title, fontsize=9)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
