"""The machine a record was made on (``host`` in every record; docs/engine.md, "The machine").

Two hosts that both call themselves "AMD EPYC" can give different CPU numbers: torch picks its CPU
kernels by the instruction set it finds (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512...),
oneDNN (its convolutions) picks its own from the CPU's flags, and the floating-point order follows the
kernels and the thread count. On one AVX-512 machine the quickstart's softmax d=2 cell gave the committed
AVX2 table's number only with both ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``
(results/README.md, "Quickstart reference records"), so a record holds the CPU's vector flags and any such
limit too. A CUDA record also names the GPU, the driver and cuDNN, which choose the GPU's kernels.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def cpu_model() -> str:
    """The host CPU's model name. CPU-trained numbers reproduce on the same CPU model and thread count
    only (results/README.md, "Quickstart reference records"): the floating-point order of the kernels
    differs between CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str | None:
    """The CPU instruction-set level torch's kernels were picked for (e.g. ``AVX512``), None if torch cannot say."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # a torch without the call
        return None


#: The vector-instruction flags of /proc/cpuinfo that choose CPU kernels, in rising order.
VECTOR_FLAGS = ("avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")  # fmt: skip
#: Environment variables that cap the instruction set torch's or oneDNN's kernels use.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str] | None:
    """The CPU's vector flags among ``VECTOR_FLAGS`` (in that order); None where /proc/cpuinfo is not."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in VECTOR_FLAGS if flag in present]
    except OSError:
        pass
    return None


def cuda_driver(proc: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The NVIDIA driver's release (e.g. ``550.54.15``, from the kernel module's version file, which needs no
    nvidia-smi), else the CUDA driver API's ``major.minor`` where torch exposes it, else None."""
    try:  # "NVRM version: NVIDIA UNIX [Open Kernel Module for] x86_64 ... 550.54.15  <build date>"
        if found := re.search(r"\s(\d+\.\d+(?:\.\d+)*)\s", proc.read_text().splitlines()[0] + " "):
            return found.group(1)
    except (OSError, IndexError):
        pass
    import torch

    query = getattr(torch._C, "_cuda_getDriverVersion", None)
    if query is None:
        return None
    try:
        version = int(query())
    except (RuntimeError, TypeError, ValueError):
        return None
    return f"{version // 1000}.{version % 1000 // 10}" if version > 0 else None


def describe(device: torch.device) -> dict[str, Any]:
    """This machine as a record stores it: the CPU's model, instruction-set level (torch's), vector flags,
    the instruction-set limits set in the environment (``isa_limits``, only when one is) and torch's thread
    count; on CUDA also the GPU's name, the CUDA driver, the CUDA runtime torch was built with and cuDNN."""
    import torch

    host: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_capability": cpu_capability(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
    }
    if limits := {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)}:
        host["isa_limits"] = limits
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
    instruction-set level (torch's; the highest vector flag; any limit set) and the thread count; on CUDA
    the GPU, driver and cuDNN. A record from before ``host`` falls back to what it stored: its ``cpu``
    string, or its device's name."""
    device = str(record.get("device", "?"))
    host = record.get("host")
    if not isinstance(host, dict):
        return f"cpu: {record.get('cpu', '?')}" if device.startswith("cpu") else device
    if device.startswith("cpu"):
        level = str(host.get("cpu_capability", "?"))
        if flags := host.get("cpu_flags"):
            level += f"/{flags[-1]}"
        if limits := host.get("isa_limits"):
            level += " (" + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())) + ")"
        return f"cpu: {host.get('cpu_model', '?')}, {level}, {host.get('threads', '?')} threads"
    return f"{host.get('gpu', device)}, driver {host.get('cuda_driver', '?')}, cuDNN {host.get('cudnn', '?')}"
