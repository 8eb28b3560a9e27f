"""Long runs through the real command (docs/long-runs.md): SIGKILL and resume, SIGTERM, two processes on
one results directory, a diverging cell. A run that is killed, signalled or raced is a `python -m protobench
run` subprocess; the runs that only resume or compare go in this process (the CLI's own entry point)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import tiny_suite


def command(suite: Path, results: Path, data: Path, *extra: str, device: str = "cpu") -> list[str]:
    return [sys.executable, "-m", "protobench", "run", str(suite), "--results", str(results),
            "--data-dir", str(data), "--device", device, *extra]  # fmt: skip


#: A test run on the CPU, and (marked ``gpu``) again on CUDA: the same assertions on both.
ON_CPU_AND_GPU = pytest.mark.parametrize("where", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])


def device_of(where: str, gpu: torch.device) -> str:
    return "cpu" if where == "cpu" else gpu.type


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(results: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(results.rglob("*.ckpt-*.pt"))
        if found:
            return found[0]
        assert process.poll() is None, "the run ended before it wrote a checkpoint"
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def kill_at_a_checkpoint(run: list[str], results: Path) -> None:
    """Start ``run``, SIGKILL it once it wrote a checkpoint, and check it left no record."""
    killed = start(run)
    wait_for_checkpoint(results, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL and not list(results.rglob("*.json"))


def out_of_memory_at_d2(real: Any) -> Any:
    """A head loss that runs out of CUDA memory at d = 2 (really, asking the caching allocator for 4 PiB
    outside any graph: the first steps are eager; on the CPU the same error is raised) and is ``real`` else."""

    def loss(self: Any, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.dim == 2:
            if h.device.type != "cuda":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 PiB")
            torch.empty(2**50, device=h.device)
        return real(self, h, y)

    return loss


def the_record(results: Path) -> dict:
    (path,) = results.rglob("*.json")
    return json.loads(path.read_text())


def comparable(record: dict) -> dict:
    """A record without what differs between two runs of one cell: timings, and when it was written."""
    history = [{k: v for k, v in row.items() if k != "images_per_second"} for row in record["history"]]
    metrics = {k: v for k, v in record["metrics"].items() if k != "train_images_per_second"}
    return {**record, "history": history, "metrics": metrics, "timings": None, "finished_at": None}


@ON_CPU_AND_GPU
def test_a_run_killed_mid_epoch_resumes_to_the_record_of_an_uninterrupted_run(tmp_path, fmnist_dir, where, gpu,
                                                                               run_cli):  # fmt: skip
    # On CUDA: bf16 autocast, graph-replayed steps (re-recorded after the resume) and the CUDA RNG state.
    device = device_of(where, gpu)
    train = {"epochs": 3, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, "mixup_alpha": 0.2, "flip": True}
    suite = tiny_suite(tmp_path / "k.yaml", methods=["dl2pa"], dims=[3], train=train)
    # Checkpoints inside epochs too (every 6 ms), so the kill leaves a mid-epoch one to resume from.
    run = command(suite, tmp_path / "res", fmnist_dir, "--deterministic", "--checkpoint-minutes", "0.0001",
                  device=device)  # fmt: skip
    kill_at_a_checkpoint(run, tmp_path / "res")
    # The resumed and the reference run go in this process (the same torch threads as the killed one's: a
    # subprocess here proves nothing more than the kill already did).
    code, out, err = run_cli(*run[3:])
    assert code == 0, err
    assert re.search(r"dl2pa d=3 s=0 resuming from (epoch \d/3, after batch \d|the end of epoch \d/3)", out)
    reference = command(suite, tmp_path / "ref", fmnist_dir, "--deterministic", device=device)
    assert run_cli(*reference[3:])[0] == 0
    assert comparable(the_record(tmp_path / "res")) == comparable(the_record(tmp_path / "ref"))
    assert not list((tmp_path / "res").rglob("*.ckpt-*.pt")) and not list((tmp_path / "res").rglob("*.lock"))


def test_sigterm_exits_143_and_prints_the_command_that_resumes(tmp_path, fmnist_dir, run_cli):
    suite = tiny_suite(tmp_path / "t.yaml", dims=[2], train={"epochs": 200, "batch_size": 32, "lr": 0.05})
    run = command(suite, tmp_path / "res", fmnist_dir, "--checkpoint-minutes", "0.0001")
    process = start(run)
    wait_for_checkpoint(tmp_path / "res", process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err and f"  protobench run {suite}" in err and "Traceback" not in err
    assert not list((tmp_path / "res").rglob("*.json")) and not list((tmp_path / "res").rglob("*.lock"))
    code, out, _ = run_cli(*run[3:], "--epochs", "1")  # another config: no resume (in this process)
    assert code == 0 and "resuming" not in out


def test_ctrl_c_while_jobs_workers_start_stops_cleanly_without_a_traceback(tmp_path, fmnist_dir):
    # A terminal's Ctrl-C goes to the whole process group: here it reaches the --jobs workers while they
    # are still importing, before their own handlers exist. They must hold it, then stop cleanly.
    suite = tiny_suite(tmp_path / "i.yaml", dims=[2, 3], train={"epochs": 200, "batch_size": 32, "lr": 0.05})
    process = subprocess.Popen([*command(suite, tmp_path / "res", fmnist_dir), "--jobs", "2"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while len(children.read_text().split()) < 3 and time.monotonic() < deadline:  # two workers + the tracker
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)  # the workers are still importing torch (over a second)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "worker process died" not in err, err
    assert "stopped by SIGINT" in err, err
    assert len(re.findall(r"w[01] \[1/1\] softmax d=\d s=0 stopped in epoch 1 .*; checkpoint saved", out)) == 2, out
    assert not list((tmp_path / "res").rglob("*.json")) and not list((tmp_path / "res").rglob("*.lock"))


def test_a_killed_jobs_worker_ends_the_run_with_one_error_line_and_the_resume_command(tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "w.yaml", dims=[2, 3], train={"epochs": 200, "batch_size": 32, "lr": 0.05})
    process = start([*command(suite, tmp_path / "res", fmnist_dir, "--checkpoint-minutes", "0.0001"), "--jobs", "2"])
    wait_for_checkpoint(tmp_path / "res", process)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    workers = [pid for pid in children if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]
    os.kill(int(workers[0]), signal.SIGKILL)  # as the out-of-memory killer would
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "error: a worker process died" in err, err
    assert f"  protobench run {suite}" in err and not list((tmp_path / "res").rglob("*.json"))


def test_two_runs_on_one_results_directory_train_every_cell_exactly_once(tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "c.yaml", dims=[2, 3], seeds=[0, 1], train={"epochs": 3, "batch_size": 32})
    run = command(suite, tmp_path / "res", fmnist_dir)
    first, second = start(run), start(run)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    trained = [m for out, _ in outputs for m in re.findall(r"\] (softmax d=\d s=\d) test [\d.]+% in", out)]
    assert sorted(trained) == ["softmax d=2 s=0", "softmax d=2 s=1", "softmax d=3 s=0", "softmax d=3 s=1"]
    totals = [int(re.search(r"done: (\d+) trained", out).group(1)) for out, _ in outputs]
    assert sum(totals) == 4
    assert len(list((tmp_path / "res").rglob("*.json"))) == 4 and not list((tmp_path / "res").rglob("*.lock"))


def test_a_diverging_cell_is_recorded_failed_the_grid_goes_on_and_the_exit_code_is_1(
    run_cli, tmp_path, fmnist_dir, monkeypatch
):
    from protobench.heads.softmax import Softmax

    real = Softmax.loss
    monkeypatch.setattr(Softmax, "loss", lambda self, h, y: real(self, h, y) * (float("nan") if self.dim == 2 else 1))
    suite = tiny_suite(tmp_path / "n.yaml", dims=[2, 4])
    code, out, _ = run_cli("run", suite, "--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu")
    assert code == 1
    assert "1 trained, 0 skipped, 0 n/a, 1 failed" in out
    assert "| softmax | failed (FloatingPointError) |" in out
    assert "failed: softmax at 2, seed 0, epoch 1: FloatingPointError: training loss became nan in epoch 1" in out


@ON_CPU_AND_GPU
def test_an_out_of_memory_cell_is_recorded_failed_and_the_grid_goes_on(run_cli, tmp_path, fmnist_dir, monkeypatch,
                                                                          where, gpu):  # fmt: skip
    # On CUDA a real one (out_of_memory_at_d2); on the CPU the same error is raised.
    from protobench.heads.softmax import Softmax

    device = device_of(where, gpu)
    monkeypatch.setattr(Softmax, "loss", out_of_memory_at_d2(Softmax.loss))
    suite = tiny_suite(tmp_path / "m.yaml", dims=[2, 4])
    code, out, _ = run_cli("run", suite, "--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", device)
    assert code == 1, out
    assert "1 trained, 0 skipped, 0 n/a, 1 failed" in out
    assert "| softmax | failed (CUDA out of memory) |" in out
    records = {record["config"]["dim"]: record for record in map(json.loads, map(Path.read_text,
               (tmp_path / "res").rglob("*.json")))}  # fmt: skip
    assert records[2]["status"] == "error" and records[2]["reason"].startswith("CUDA out of memory: ")
    assert records[4]["status"] == "ok" and records[4]["device"].startswith("cpu") == (device == "cpu")
