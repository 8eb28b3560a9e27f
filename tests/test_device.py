"""Device and precision resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protobench.device import cpu_model, resolve_device, resolve_precision
from protobench.errors import UserError


def test_device_resolution(monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(UserError, match="--device 'tpu' is not a device"):
        resolve_device("tpu")
    with pytest.raises(UserError, match="not a device"):
        resolve_device("cuda:x")


def test_precision_auto_is_bf16_on_cuda_only() -> None:
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_cpu_model_names_this_host() -> None:
    name = cpu_model()
    assert name and name != "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert name in cpuinfo.read_text()
