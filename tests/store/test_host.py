"""The machine in every record (protobench/store/host.py) and how ``results check`` counts hosts by it: CPU records
by model, instruction-set level and thread count, CUDA ones by GPU, driver and cuDNN (docs/engine.md)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from protobench.store import audit
from protobench.store.host import cpu_flags, cpu_model, cuda_driver, describe, host_key
from tests.conftest import minimal_record


def test_a_cpu_host_names_its_model_instruction_set_and_threads(monkeypatch, tmp_path):
    host = describe(torch.device("cpu"))
    assert set(host) - {"isa_limits"} == {"cpu_model", "cpu_capability", "cpu_flags", "threads"}
    assert host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert host["threads"] == torch.get_num_threads() and host["cpu_model"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a limit set in the environment is recorded
    assert describe(torch.device("cpu"))["isa_limits"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    (tmp_path / "cpuinfo").write_text("model name\t: X\nflags\t\t: fpu avx2 sse4_2 avx fma avx512f\n")
    assert cpu_flags(tmp_path / "cpuinfo") == ["avx", "fma", "avx2", "avx512f"]
    (tmp_path / "nvidia").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 2024\n")
    assert cuda_driver(tmp_path / "nvidia") == "550.54.15"
    (tmp_path / "nvidia").write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release\n")
    assert cuda_driver(tmp_path / "nvidia") == "580.95.05"


def test_host_keys_tell_instruction_sets_apart_and_fall_back_for_older_records():
    cpu = {"device": "cpu (1 threads)", "cpu": "AMD EPYC"}
    avx2 = {**cpu, "host": {"cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "threads": 1}}
    avx512 = {**cpu, "host": {"cpu_model": "AMD EPYC", "cpu_capability": "AVX512", "threads": 1}}
    assert host_key(avx2) != host_key(avx512) and "AVX512" in host_key(avx512)
    assert host_key(cpu) == "cpu: AMD EPYC"  # a record from before host
    gpu = {"device": "NVIDIA H200", "host": {"gpu": "NVIDIA H200", "cuda_driver": "13.0", "cudnn": 91002}}
    limited = {**cpu, "host": {**avx2["host"], "cpu_flags": ["avx2", "avx512f"], "isa_limits": {"X": "AVX2"}}}
    assert host_key(limited) == "cpu: AMD EPYC, AVX2/avx512f (X=AVX2), 1 threads"
    assert host_key(gpu) == "NVIDIA H200, driver 13.0, cuDNN 91002"
    assert host_key({"device": "NVIDIA H200"}) == "NVIDIA H200"


def test_results_check_lists_the_records_of_the_less_common_instruction_set(tmp_path):
    folder = tmp_path / "s" / "softmax"
    folder.mkdir(parents=True)
    for seed, level in enumerate(["AVX2", "AVX2", "AVX512"]):
        host = {"cpu_model": "AMD EPYC", "cpu_capability": level, "threads": 1}
        record = minimal_record(seed=seed, device="cpu (1 threads)", cpu="AMD EPYC", host=host)
        (folder / f"d2_s{seed}.json").write_text(json.dumps(record))
    mixed = [f for f in audit.check(tmp_path) if f.kind == "mixed-host"]
    assert [f.path.name for f in mixed] == ["d2_s2.json"]
    assert "AVX512, 1 threads; suite s holds cpu: AMD EPYC, AVX2, 1 threads (2)" in mixed[0].detail


def test_cpu_model_names_this_host() -> None:
    name = cpu_model()
    assert name and name != "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert name in cpuinfo.read_text()
