"""The machine a record was made on (``host`` in every record; docs/engine.md, "The machine").

Two hosts that both call themselves "AMD EPYC" can give different CPU numbers: torch picks its CPU
kernels by the instruction set it finds (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512...),
and the floating-point order follows the kernels and the thread count. A CUDA record also names the
GPU, the driver and cuDNN, which choose the GPU's kernels.
"""

from __future__ import annotations

from typing import Any

import torch

from protobench.device import cpu_model


def cpu_capability() -> str | None:
    """The CPU instruction-set level torch's kernels were picked for (e.g. ``AVX512``), None if torch cannot say."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # a torch without the call
        return None


def cuda_driver() -> str | None:
    """The CUDA driver's version as ``major.minor`` where torch exposes it, else None."""
    query = getattr(torch._C, "_cuda_getDriverVersion", None)
    if query is None:
        return None
    try:
        version = int(query())
    except (RuntimeError, TypeError, ValueError):
        return None
    return f"{version // 1000}.{version % 1000 // 10}" if version > 0 else None


def describe(device: torch.device) -> dict[str, Any]:
    """This machine as a record stores it: the CPU's model, instruction-set level and torch's thread
    count; on CUDA also the GPU's name, the CUDA driver, the CUDA runtime torch was built with and cuDNN."""
    host: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_capability": cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        host.update(
            gpu=torch.cuda.get_device_name(device),
            cuda_driver=cuda_driver(),
            cuda_runtime=torch.version.cuda,
            cudnn=cudnn,
        )
    return host


def host_key(record: dict[str, Any]) -> str:
    """What makes two records' hosts the same for their numbers, in words: on the CPU the model, the
    instruction-set level and the thread count; on CUDA the GPU, driver and cuDNN. A record from before
    ``host`` falls back to what it stored: its ``cpu`` string, or its device's name."""
    device = str(record.get("device", "?"))
    host = record.get("host")
    if not isinstance(host, dict):
        return f"cpu: {record.get('cpu', '?')}" if device.startswith("cpu") else device
    if device.startswith("cpu"):
        cpu = host.get("cpu_model", "?")
        return f"cpu: {cpu}, {host.get('cpu_capability', '?')}, {host.get('threads', '?')} threads"
    return f"{host.get('gpu', device)}, driver {host.get('cuda_driver', '?')}, cuDNN {host.get('cudnn', '?')}"
