"""Prototype sets read from a file: a K x d ``.npy`` array of unit rows (``protobench prototypes show``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protobench.core.errors import UserError

#: How far a row's norm may be from 1 before the file is refused; accepted rows are renormalised.
UNIT_TOLERANCE = 1e-3


def load_prototype_file(file: Path) -> np.ndarray:
    """A K x d float64 array of unit rows from a .npy file, or a UserError saying what is wrong."""
    if not file.is_file():
        raise UserError(f"no such file: {file}")
    try:
        P = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{file} is not a .npy array: {exc}") from None
    if P.ndim != 2 or P.shape[0] < 2 or P.shape[1] < 2:
        raise UserError(f"{file} must hold a K x d array with K, d >= 2, got shape {P.shape}")
    if not np.issubdtype(P.dtype, np.floating):
        raise UserError(f"{file} must hold floats, got dtype {P.dtype}")
    P = P.astype(np.float64)
    if not np.isfinite(P).all():
        raise UserError(f"{file} contains NaN or infinite values")
    norms = np.linalg.norm(P, axis=1)
    worst = float(np.abs(norms - 1).max())
    if worst > UNIT_TOLERANCE:
        raise UserError(f"{file}: rows must be unit vectors (a row norm is off by {worst:.3g})")
    return P / norms[:, None]
