"""The entry points: check a request, answer it from the cache or build it, store what was built."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from protobench.core.device import resolve_device
from protobench.prototypes.base import GenerationInfo, get_generator, resolve_params
from protobench.prototypes.cache import cache_path, load_cached, save_cached

log = logging.getLogger(__name__)


def generate(
    kind: str,
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    use_cache: bool = True,
    device: str | torch.device = "cpu",
    **params: Any,
) -> torch.Tensor:
    """K x d float32 CPU tensor of unit prototypes from generator ``kind``, deterministic per seed.

    Solved in float64 on ``device``, the CPU unless a caller asks otherwise: never the machine's GPU by
    default, so a set does not depend on where a run happens to be and a ``--device cpu`` run on a GPU
    node never opens a CUDA context. Every shipped suite's sets take seconds on a CPU (K = 1000,
    d = 512: about 15 s), and each is cached.
    """
    prototypes, _ = generate_with_info(kind, num_classes, dim, seed, use_cache=use_cache, device=device, **params)
    return prototypes


def generate_with_info(
    kind: str,
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    use_cache: bool = True,
    device: str | torch.device = "cpu",
    **params: Any,
) -> tuple[torch.Tensor, GenerationInfo]:
    """Like :func:`generate`, also returning how the set was obtained (iterations, loosened tau...)."""
    resolved = resolve_params(kind, num_classes, dim, seed, params)
    dev = resolve_device(device)
    path = cache_path(kind, num_classes, dim, seed, resolved, dev)
    if use_cache and path.exists():
        loaded = load_cached(path)
        if loaded is not None:
            return loaded

    start = time.perf_counter()
    prototypes64, info = get_generator(kind).build(num_classes, dim, seed, dev, resolved)
    info.seconds = time.perf_counter() - start
    info.device = str(dev)
    for note in info.notes:
        log.warning("%s prototypes K=%d d=%d: %s", kind, num_classes, dim, note)
    prototypes = torch.nn.functional.normalize(prototypes64.detach().cpu(), dim=1).to(torch.float32)
    if use_cache:
        save_cached(path, prototypes, info)
    return prototypes, info
