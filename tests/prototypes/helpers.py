"""Generate a prototype set on the CPU without the cache, checking the shape every caller relies on."""

from __future__ import annotations

import torch

from protobench import prototypes


def generate_cpu(kind: str, K: int, d: int, seed: int = 0, **params) -> torch.Tensor:
    """A K x d float32 CPU set of unit rows (asserted), computed afresh."""
    P = prototypes.generate(kind, K, d, seed, use_cache=False, device="cpu", **params)
    assert P.shape == (K, d) and P.dtype == torch.float32 and P.device.type == "cpu"
    assert torch.allclose(P.norm(dim=1), torch.ones(K), atol=1e-6)
    return P
