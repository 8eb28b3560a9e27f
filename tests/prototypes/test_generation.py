"""generate / generate_with_info: deterministic per seed for every generator, the device is resolved once."""

from __future__ import annotations

import pytest
import torch

from protobench import prototypes
from protobench.core.errors import UserError
from tests.prototypes.helpers import generate_cpu


@pytest.mark.parametrize("kind", prototypes.GENERATORS)
def test_deterministic_per_seed_and_seeds_differ(kind):
    a, b = generate_cpu(kind, 5, 4, seed=3), generate_cpu(kind, 5, 4, seed=3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, generate_cpu(kind, 5, 4, seed=4), atol=1e-3)


def test_info_records_the_request():
    P, info = prototypes.generate_with_info("hpn", 6, 3, 2, use_cache=False, device=torch.device("cpu"))
    assert (info.kind, info.num_classes, info.dim, info.seed) == ("hpn", 6, 3, 2)
    assert info.params == {"max_iter": 8000} and info.device == "cpu" and not info.cached
    assert info.iterations > 0 and info.converged and info.seconds > 0


def test_bad_device_is_user_error():
    with pytest.raises(UserError, match=r"^--device 'gpu' is not a device; use auto, cpu, cuda or cuda:N$"):
        prototypes.generate("uniform", 4, 4, use_cache=False, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_is_user_error():
    with pytest.raises(UserError, match="no CUDA device is available"):
        prototypes.generate("uniform", 4, 4, use_cache=False, device="cuda")
