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
