"""Device and precision resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from protobench.core.device import resolve_device, resolve_precision
from protobench.core.errors import UserError


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


# ---------------------------------------------------------------- a CPU run on a GPU node leaves the GPU alone

#: Imported by every Python process started with its folder on PYTHONPATH (the run and its --jobs
#: workers): at exit each appends its pid and whether it had opened a CUDA context.
CUDA_WITNESS = """
import atexit, os, sys

def _report():
    torch = sys.modules.get("torch")
    opened = bool(torch is not None and torch.cuda.is_initialized())
    with open(os.environ["CUDA_WITNESS_FILE"], "a") as f:
        f.write(f"{os.getpid()} {opened}\\n")

atexit.register(_report)
"""


def prototype_suite(tmp_path: Path) -> Path:
    """A tiny suite whose heads solve prototypes (uniform, HPN, EBV), checkpointed as it goes."""
    from tests.conftest import tiny_suite

    return tiny_suite(tmp_path / "c.yaml", methods=["dl2pa", "hpn", "ebv"], dims=[3],
                      train={"epochs": 1, "batch_size": 32, "lr": 0.05})  # fmt: skip


def test_a_cpu_run_never_asks_for_cuda_where_cuda_is_reported_available(run_cli, tmp_path, fmnist_dir, monkeypatch):
    # Any CUDA use (a tensor on a CUDA device, CUDA's RNG state) goes through torch.cuda._lazy_init.
    def refuse() -> None:
        raise AssertionError("a --device cpu run asked for CUDA")

    import torch.cuda.random  # binds its own names for these

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for module in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(module, "device_count", lambda: 1)
        monkeypatch.setattr(module, "_lazy_init", refuse)
    code, out, err = run_cli("run", prototype_suite(tmp_path), "--results", tmp_path / "res", "--data-dir",
                             fmnist_dir, "--device", "cpu", "--checkpoint-minutes", "0.0001")  # fmt: skip
    assert code == 0, out + err
    assert "3 trained" in out


@pytest.mark.gpu
def test_a_cpu_run_on_a_gpu_node_opens_no_cuda_context_in_any_process(tmp_path, fmnist_dir, gpu):
    import os
    import subprocess
    import sys

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CUDA_WITNESS)
    witness = tmp_path / "witness.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), os.getcwd()]), "CUDA_WITNESS_FILE": str(witness)}
    run = [sys.executable, "-m", "protobench", "run", str(prototype_suite(tmp_path)), "--results",
           str(tmp_path / "r"), "--data-dir", str(fmnist_dir), "--device", "cpu", "--jobs", "2",
           "--checkpoint-minutes", "0.0001"]  # fmt: skip
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = witness.read_text().split("\n")[:-1]
    assert len(reports) >= 3, reports  # the run and its two workers
    assert [line for line in reports if line.endswith("True")] == [], reports
    assert gpu.type == "cuda" or not torch.cuda.is_available()  # (rehearsal: the same on a CPU)


def fake_proc(tmp_path: Path, membership: str, mounts: list[tuple[str, str, str]]) -> Path:
    """A /proc/self stand-in: ``cgroup`` holds ``membership``, ``mounts`` the (mount point, type, options)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(membership)
    (proc / "mounts").write_text("".join(f"cgroup {point} {kind} {opts} 0 0\n" for point, kind, opts in mounts))
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_usable_cpus_is_the_smallest_of_affinity_cgroup_quota_and_the_environment(tmp_path, monkeypatch):
    from protobench.core.device import cpu_limits, usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    root = tmp_path / "cg2"
    write(root / "job" / "step" / "cpu.max", "max 100000\n")
    write(root / "job" / "cpu.max", "250000 100000\n")  # 2.5 CPUs: a parent's quota binds its children, rounded up
    proc = fake_proc(tmp_path, "0::/job/step\n", [(str(root), "cgroup2", "rw")])
    assert cpu_limits({}, proc) == {"affinity": 8, "cgroup quota": 3} and usable_cpus({}, proc) == 3
    env = {"SLURM_CPUS_PER_TASK": "2", "OMP_NUM_THREADS": "4"}
    assert cpu_limits(env, proc) == {"affinity": 8, "cgroup quota": 3, "SLURM_CPUS_PER_TASK": 2, "OMP_NUM_THREADS": 4}
    assert usable_cpus(env, proc) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # taskset -c 0, a cpuset, Slurm's task/affinity
    assert usable_cpus(env, proc) == 1
    # Unset, empty, zero or not a number: no limit from the variable.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "", "OMP_NUM_THREADS": "0"}, tmp_path / "nothere") == 8
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "two"}, tmp_path / "nothere") == 8


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    from protobench.core.device import cgroup_cpu_quota

    root = tmp_path / "cpu,cpuacct"
    write(root / "cpu.cfs_quota_us", "150000\n")  # the container's own cgroup, mounted at the root
    write(root / "cpu.cfs_period_us", "100000\n")
    mounts = [(str(root), "cgroup", "rw,nosuid,cpu,cpuacct"), (str(tmp_path / "memory"), "cgroup", "rw,memory")]
    # The path names the host's cgroup, which the container's mount does not show: its root stands in.
    proc = fake_proc(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n", mounts)
    assert cgroup_cpu_quota(proc) == 2
    write(root / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(proc) is None


def test_torch_threads_sets_the_count_for_the_body_and_puts_it_back():
    from protobench.core.device import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
