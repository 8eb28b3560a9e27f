"""The on-disk cache of prototype sets: one ``.npz`` per (generator, K, d, seed, parameters).

Files live in ``cache_dir()/"prototypes"``, so a benchmark grid computes each set once. The file
name is the key; changing how it is made orphans every cached set. A generator whose algorithm
changes bumps its numerics ``version``, which is part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protobench.core.paths import atomic_write, cache_dir
from protobench.prototypes.base import GenerationInfo

log = logging.getLogger(__name__)

#: The key's version field from before generators had numerics versions. A change of a generator's
#: algorithm now bumps its own ``version`` (``register_generator``), which enters the key beside this
#: field; bump CACHE_VERSION only when the way sets are stored changes.
CACHE_VERSION = 1
#: Where an algorithm changed before numerics versions existed (those names must stay as they are).
#: hpn 2: the continuation stops before a stage that stacks prototypes (protobench/prototypes/hpn.py).
GENERATOR_VERSIONS: dict[str, int] = {"hpn": 2}


def cache_path(
    kind: str, K: int, d: int, seed: int, params: dict[str, Any], device: torch.device | None = None
) -> Path:
    """The cache file of a set; ``params`` are the resolved ones (defaults filled in). A set solved on
    another device than the CPU (floating-point order differs) has a key of its own."""
    from protobench.prototypes.base import get_generator

    key_fields: dict[str, Any] = {"v": GENERATOR_VERSIONS.get(kind, CACHE_VERSION), "params": params}
    if (numerics := get_generator(kind).version) != 1:  # version 1 sets keep the names they always had
        key_fields["numerics"] = numerics
    if device is not None and device.type != "cpu":
        key_fields["device"] = device.type
    key = json.dumps(key_fields, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "prototypes" / f"{kind}_K{K}_d{d}_s{seed}_{digest}.npz"


def load_cached(path: Path) -> tuple[torch.Tensor, GenerationInfo] | None:
    """The float32 set and its info stored at ``path``; None when the file cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            array = data["prototypes"]
            info = GenerationInfo(**json.loads(str(data["info"])))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        # A damaged cache file is not the user's fault: recompute and overwrite it.
        log.warning("ignoring unreadable prototype cache file %s", path)
        return None
    info.cached = True
    return torch.from_numpy(array.astype(np.float32)), info


def save_cached(path: Path, prototypes: torch.Tensor, info: GenerationInfo) -> None:
    """Store a set and its info at ``path``; a failure to write is logged, never raised."""
    try:
        # Atomic: concurrent runs see either no file or a complete one.
        atomic_write(
            path, lambda f: np.savez(f, prototypes=prototypes.numpy(), info=np.array(json.dumps(asdict(info))))
        )
    except OSError as exc:
        # The cache is an optimisation; a read-only cache dir must not fail the run.
        log.warning("could not write prototype cache %s: %s", path, exc)
