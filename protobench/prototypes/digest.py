"""The identity of a prototype set: a digest of its exact values (``prototype_digest`` in a record).

A generator's numerics version says which algorithm made a set, but HPN's stop before a stacking stage
(a378fce) moved only the sets where a stage stacks prototypes and kept version 1; the digest tells the
sets themselves apart (docs/engine.md, "Prototype digests")."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def set_digest(prototypes: Any) -> str:
    """sha256 of a K x d set's shape and its values as little-endian float64 (a float32 set widens exactly,
    so the float32 set, the fp64 cell's float64 copy and a numpy array of either give one digest)."""
    if hasattr(prototypes, "detach"):  # a torch tensor, on any device
        prototypes = prototypes.detach().cpu().double().numpy()
    array = np.ascontiguousarray(np.asarray(prototypes, dtype="<f8"))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
