"""Where and how a cell computes: the device, the precision, seeding and waiting for queued work.

Resolved once per run (by the CLI, the runner or a benchmark) and passed down as a ``torch.device``
and a precision name, so model and method code never look at either (docs/engine.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protobench.core.errors import UserError


def resolve_device(spec: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:i``; anything else is a UserError."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: no CUDA device is available here; use --device cpu or auto")
        device = torch.device(spec)
        if device.index is not None and device.index >= (count := torch.cuda.device_count()):
            indices = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise UserError(f"--device {spec}: this machine has {count} CUDA device(s); use {indices}, or cuda")
        return device
    raise UserError(f"--device '{spec}' is not a device; use auto, cpu, cuda or cuda:N")


def device_name(device: torch.device) -> str:
    """A readable name of the device (the GPU model, or the CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_limits(environ: Mapping[str, str] | None = None, proc: Path = Path("/proc/self")) -> dict[str, int]:
    """Every limit on the CPUs this process may use that is set, by where it comes from: the CPU
    affinity (Slurm's task/affinity and task/cgroup, taskset, cpusets), the cgroup's CPU quota (v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``; Docker's ``--cpus``, Kubernetes), ``SLURM_CPUS_PER_TASK``
    (an allocation Slurm does not enforce without those plugins) and ``OMP_NUM_THREADS`` (the user's
    own cap). docs/slurm/README.md, "Threads"."""
    environ = os.environ if environ is None else environ
    limits: dict[str, int] = {}
    try:
        limits["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        limits["affinity"] = os.cpu_count() or 1
    quota = cgroup_cpu_quota(proc)
    if quota is not None:
        limits["cgroup quota"] = quota
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:  # unset, empty or malformed: no limit from it
            limits[name] = int(value)
    return limits


def usable_cpus(environ: Mapping[str, str] | None = None, proc: Path = Path("/proc/self")) -> int:
    """How many CPUs this process may use: the smallest of ``cpu_limits`` (at least 1)."""
    return max(1, min(cpu_limits(environ, proc).values()))


def cgroup_cpu_quota(proc: Path = Path("/proc/self")) -> int | None:
    """The CPU quota of this process's cgroup and of every cgroup above it, as whole CPUs (quota / period,
    rounded up), the smallest; None when no quota is set or the files cannot be read."""
    try:
        memberships = [line.split(":", 2) for line in (proc / "cgroup").read_text().splitlines()]
        mounts = [line.split() for line in (proc / "mounts").read_text().splitlines()]
    except OSError:
        return None
    found: list[int] = []
    for entry in memberships:
        if len(entry) != 3:
            continue
        _, controllers, path = entry
        if controllers == "":  # cgroup v2: one hierarchy, cpu.max holds "quota period" or "max period"
            roots = [Path(m[1]) for m in mounts if len(m) > 2 and m[2] == "cgroup2"]
            found += [q for root in roots for d in cgroup_dirs(root, path) if (q := read_quota(d / "cpu.max"))]
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own hierarchy
            roots = [Path(m[1]) for m in mounts if len(m) > 3 and m[2] == "cgroup" and "cpu" in m[3].split(",")]
            found += [q for root in roots for d in cgroup_dirs(root, path)
                      if (q := read_quota(d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"))]  # fmt: skip
    return min(found) if found else None


def cgroup_dirs(root: Path, path: str) -> list[Path]:
    """The folders of cgroup ``path`` and its ancestors under the hierarchy mounted at ``root``. In a
    container the path may name the host's cgroup, absent from the container's mount: its root stands in."""
    parts = [p for p in path.split("/") if p]
    return [d for n in range(len(parts), -1, -1) if (d := root.joinpath(*parts[:n])).is_dir()]


def read_quota(path: Path, period_path: Path | None = None) -> int | None:
    """Whole CPUs of one cgroup quota file (v2 ``cpu.max``, or v1 quota and period files); None for none."""
    try:
        words = path.read_text().split()
        if period_path is not None:
            words += period_path.read_text().split()
        quota, period = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):  # "max" (v2) is no quota
        return None
    if quota <= 0 or period <= 0:  # -1 (v1) is no quota
        return None
    return max(1, math.ceil(quota / period))


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the body with ``count`` torch threads (as it is when None), then put the previous count back."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` means bf16 autocast on CUDA and fp32 on CPU (CPU bf16 is slower than fp32 here)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or as it is when it is float32 or float64 already: the heads compute in float32
    under bf16 autocast, and in float64 in an fp64 cell (the fingerprint test's, docs/engine.md)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def replays_graphs(device: torch.device, cuda_graphs: bool) -> bool:
    """Whether training steps are replayed from CUDA graphs: asked for, and on CUDA (elsewhere eager)."""
    return cuda_graphs and device.type == "cuda"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def rng_state() -> dict[str, Any]:
    """The state of every global random number generator (python, numpy, torch CPU and CUDA), in
    types that ``torch.load(weights_only=True)`` reads back (no numpy arrays)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        # Only where this process uses CUDA already: asking would open a CUDA context (a --device cpu run
        # on a GPU node must leave the GPU alone).
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what ``rng_state`` returned."""
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (timing only; never inside the step)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
