"""``protobench bench``: the benchmarks as one command group, through the real entry point."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.conftest import tiny_suite


def test_help_lists_every_benchmark(run_cli) -> None:
    code, out, _ = run_cli("bench", "--help")
    assert code == 0
    for name in ("methods", "prototypes", "graphs", "pipeline", "gpu-check"):
        assert name in out


def test_options_pass_through_to_the_benchmark(run_cli) -> None:
    code, out, _ = run_cli("bench", "pipeline", "--help")  # argparse's help of the benchmark itself
    assert code == 0 and "--workers" in out and "--rounds" in out
    code, _, err = run_cli("bench", "methods", "--suite", "no-such-suite", "--kernels-only")
    assert code == 2 and err.startswith("error: unknown suite 'no-such-suite'") and err.count("\n") == 1
    code, _, err = run_cli("bench", "pipeline", "--rounds", "x")
    assert code == 2 and err.startswith("error: argument --rounds: invalid int value") and err.count("\n") == 1


def test_pipeline_json(run_cli, tmp_path, fmnist_dir) -> None:
    suite = tiny_suite(tmp_path / "p.yaml")
    code, out, _ = run_cli("bench", "pipeline", "--suite", suite, "--data-dir", fmnist_dir, "--device", "cpu",
                           "--steps", "2", "--rounds", "2", "--warmup", "1", "--threads", "1", "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["engine_images_per_s"] > 0 and result["ratio_engine_vs_model_only"]["median"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda_in_one_line(run_cli) -> None:
    for args in ((), ("--device", "cpu")):  # --device cpu alone is no smoke test either
        code, out, err = run_cli("bench", "gpu-check", *args)
        assert code == 2 and out == "" and err.startswith("error: gpu-check") and err.count("\n") == 1
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:  # python -m protobench.bench gpu-check alike
        main(["gpu-check"])
    assert exit_info.value.code == 2


def test_gpu_check_quick_on_cpu_writes_the_json(run_cli, tmp_path, monkeypatch) -> None:
    from protobench.bench import gpu_check

    assert gpu_check.QUICK.jobs == (1, 2) and gpu_check.QUICK.packs == (2,)
    # One job here: --jobs 2 starts worker processes, the runner's own path (tests/running/test_runner.py),
    # which takes longer than this test should on a busy 2-core machine.
    monkeypatch.setattr(gpu_check, "QUICK", dataclasses.replace(gpu_check.QUICK, jobs=(1,)))
    out_file = tmp_path / "check" / "gpu-check.json"
    code, out, _ = run_cli("bench", "gpu-check", "--device", "cpu", "--quick", "--workers", "0", "--out", out_file)
    assert code == 0 and "synthetic" in out and f"wrote {out_file}" in out
    result = json.loads(out_file.read_text())
    assert result["quick"] and "synthetic" in result["data"]["note"]
    assert result["pipeline"]["backbone"] == "resnet32" and result["pipeline"]["engine_images_per_s"] > 0
    assert [(run["jobs"], run["pack"]) for run in result["grid"]] == [(1, 1), (1, 2)]
    assert [run["trained"] for run in result["grid"]] == [2, 2] and result["projection"]["pack"] in (1, 2)
    assert "--pack 2: 2 cells x 1 epochs" in out
    assert result["projection"]["suite"] == "cifar100" and result["projection"]["seconds"] > 0
    assert result["ddp"]["status"].startswith("skipped")
    assert set(result["goals"]) == {"engine_vs_dataloader", "engine_vs_model_only", "paper_grid_hours"}


def test_gpu_check_goals_read_the_ratio_intervals_and_the_projected_hours() -> None:
    from protobench.bench.gpu_check import gpu_goals

    def ratio(low, high):
        return {"median": (low + high) / 2, "low": low, "high": high}

    pipeline = {"ratio_engine_vs_dataloader": ratio(3.1, 4.0), "ratio_engine_vs_model_only": ratio(0.7, 0.9)}
    goals = gpu_goals(pipeline, {"hours": 2.0})
    assert [goals[k]["verdict"] for k in goals] == ["ok", "undecided", "ok"]
    pipeline["ratio_engine_vs_dataloader"] = ratio(2.0, 2.9)
    goals = gpu_goals(pipeline, {"hours": 2.01})
    assert goals["engine_vs_dataloader"]["verdict"] == "SLOWER" and goals["paper_grid_hours"]["verdict"] == "missed"
