"""Threads follow the allocation (docs/slurm/README.md, "Threads"): without --threads a run uses the CPUs
the process may use, split between its --jobs workers, and each record says how many its cell had."""

from __future__ import annotations

import json
import os

import torch

from tests.conftest import tiny_suite


def devices(results) -> list[str]:
    return sorted(json.loads(p.read_text())["device"] for p in results.rglob("*.json"))


def test_two_jobs_on_a_two_cpu_allocation_use_one_thread_each(run_cli, tmp_path, fmnist_dir, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # more CPUs in sight than allocated
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    suite = tiny_suite(tmp_path / "t.yaml", dims=[2, 3], train={"epochs": 1, "batch_size": 32})
    args = ["run", suite, "--data-dir", fmnist_dir, "--device", "cpu"]
    code, out, err = run_cli(*args, "--results", tmp_path / "two", "--jobs", "2")
    assert code == 0, err
    assert "2 cells, 0 already finished, on cpu (2 threads)" in out  # the run's, before the split
    assert devices(tmp_path / "two") == ["cpu (1 threads)", "cpu (1 threads)"]
    assert torch.get_num_threads() == before  # put back after the run (the CLI in-process, as here)
    code, _, err = run_cli(*args, "--dims", "2", "--results", tmp_path / "one")  # one process: the whole allocation
    assert code == 0, err
    assert devices(tmp_path / "one") == ["cpu (2 threads)"]
    code, _, err = run_cli(*args, "--dims", "2", "--results", tmp_path / "flag", "--threads", "1")  # --threads wins
    assert code == 0, err
    assert devices(tmp_path / "flag") == ["cpu (1 threads)"]
