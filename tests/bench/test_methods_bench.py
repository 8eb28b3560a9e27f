"""The methods benchmark: one table of images/s and kernels per step, relative to softmax."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from protobench.bench.methods import kernels_per_step, launches_kernel, run
from protobench.data.prepare import prepare_cell_data
from protobench.suites import load_suite
from tests.conftest import tiny_suite


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] and "/" not in line}


def test_table_has_every_method_with_ratios_and_kernel_counts(tmp_path, fmnist_dir, capsys) -> None:
    suite = tiny_suite(tmp_path / "bench.yaml", methods=["softmax", "dl2pa", "dnc", "etf"])
    argv = ["--suite", str(suite), "--dim", "4", "--rounds", "2", "--epochs", "1", "--device", "cpu"]
    run([*argv, "--data-dir", str(fmnist_dir)])
    out = capsys.readouterr().out
    assert "etf: skipped (NotApplicable: ETF needs d >= K-1 (K=10, d=4))" in out
    assert out.count("round 2 dl2pa:") == 1  # interleaved rounds, a line per measurement
    rows = _rows(out.split("method")[-1])
    assert set(rows) == {"softmax", "dl2pa", "dnc"}
    assert rows["softmax"][2] == "1.000" and rows["softmax"][-1] == "1.000"
    assert all(row[1].endswith("%") for row in rows.values())  # spread of the rounds
    kernels = {name: int(row[-2]) for name, row in rows.items()}
    assert kernels["softmax"] < kernels["dl2pa"] < kernels["dnc"]
    for name in ("dl2pa", "dnc"):
        assert float(rows[name][-1]) == round(kernels["softmax"] / kernels[name], 3)


def test_kernel_count_is_exact_and_covers_the_whole_step(tmp_path, fmnist_dir) -> None:
    suite = dataclasses.replace(load_suite(tiny_suite(tmp_path / "k.yaml")), val_size=0)
    data = prepare_cell_data(suite, fmnist_dir, None)
    cpu = torch.device("cpu")
    first = kernels_per_step(suite, data, "softmax", 4, cpu)
    assert first == kernels_per_step(suite, data, "softmax", 4, cpu)
    # The smallcnn's forward alone runs about a dozen kernels; backward and optimiser add more.
    assert first > 30
    assert kernels_per_step(suite, data, "dl2pa", 4, cpu) > first


def test_kernels_only_times_nothing(tmp_path, fmnist_dir, capsys) -> None:
    suite = tiny_suite(tmp_path / "ko.yaml", methods=["softmax", "hpn", "etf"])
    run(["--suite", str(suite), "--dim", "4", "--kernels-only", "--data-dir", str(fmnist_dir), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "round" not in out and "images/s" not in out
    assert "etf: skipped" in out
    rows = _rows(out.split("softmax/it")[-1])
    assert set(rows) == {"softmax", "hpn"} and rows["softmax"] == [rows["softmax"][0], "1.000"]
    assert int(rows["hpn"][0]) > int(rows["softmax"][0])


def test_bad_suite_is_one_line_and_exit_2(capsys) -> None:
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "--suite", "no-such-suite", "--kernels-only"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown suite 'no-such-suite'") and err.count("\n") == 1


def test_only_operations_that_run_a_kernel_are_counted() -> None:
    aten = torch.ops.aten
    assert launches_kernel(aten.add.Tensor) and launches_kernel(aten.mm.default)
    # Views, in-place view changes (DNC's 1-D @ 2-D products squeeze_ their result) and allocations: none.
    for op in (aten.view.default, aten.t.default, aten.squeeze_.dim, aten.unsqueeze_.default, aten.empty.memory_format):
        assert not launches_kernel(op), op
