"""The methods benchmark: one table of images/s and kernels per step, relative to softmax."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from protobench.bench.methods import compare_to_softmax, kernels_per_step, launches_kernel, median_interval, run
from protobench.data.prepare import prepare_cell_data
from protobench.suite.definition import load_suite
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
    assert "range: a 50.0% confidence interval" in out  # two rounds: their min and max
    for name in ("dl2pa", "dnc"):
        low, high = (float(x) for x in rows[name][3].split("-"))
        assert low <= float(rows[name][2]) <= high and rows[name][4] in {"ok", "SLOWER", "undecided"}
    assert all(row[1].endswith("%") for row in rows.values())  # spread of the rounds
    kernels = {name: int(row[-2]) for name, row in rows.items()}
    assert kernels["softmax"] < kernels["dl2pa"] < kernels["dnc"]
    for name in ("dl2pa", "dnc"):
        assert float(rows[name][-1]) == round(kernels["softmax"] / kernels[name], 3)


def test_kernel_count_is_exact_and_covers_the_whole_step(tmp_path, fmnist_dir) -> None:
    suite = dataclasses.replace(load_suite(tiny_suite(tmp_path / "k.yaml")), val_size=0)
    data = prepare_cell_data(suite.data_settings, fmnist_dir, None)
    cpu = torch.device("cpu")
    first = kernels_per_step(suite, data, "softmax", 4, cpu)
    assert first == kernels_per_step(suite, data, "softmax", 4, cpu)
    # The smallcnn's forward alone runs about a dozen kernels; backward and optimiser add more.
    assert first > 30
    assert kernels_per_step(suite, data, "dl2pa", 4, cpu) > first
    # With mixup the step blends the images and computes the loss twice: more kernels, all counted.
    mixed = dataclasses.replace(suite, train=dataclasses.replace(suite.train, mixup_alpha=1.0))
    assert kernels_per_step(mixed, data, "softmax", 4, cpu) > first


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


def test_ratios_are_paired_by_round_and_the_verdict_needs_the_whole_interval() -> None:
    # The machine slows down over the rounds; each method is 0.9x or 1.0x softmax in its own round.
    speeds = {
        "softmax": [100.0, 80.0, 60.0],
        "slow": [90.0, 72.0, 54.0],
        "even": [100.0, 80.0, 60.0],
        "noisy": [110.0, 72.0, 57.0],
    }
    compared = compare_to_softmax(speeds)
    assert compared["slow"].ratio == pytest.approx(0.9) and compared["slow"].high == pytest.approx(0.9)
    assert compared["slow"].verdict == "SLOWER" and compared["even"].verdict == "ok"
    # Unpaired medians would say 72/80 = 0.9 for "noisy"; paired: 1.1, 0.9, 0.95.
    assert compared["noisy"].ratio == pytest.approx(0.95)
    assert (compared["noisy"].low, compared["noisy"].high) == pytest.approx((0.9, 1.1))
    assert compared["noisy"].verdict == "undecided"
    assert compared["softmax"].spread == pytest.approx(0.5)  # (100 - 60) / 80
    with pytest.raises(ValueError, match="slow: 2 rounds measured, softmax 3"):
        compare_to_softmax({"softmax": [1.0, 1.0, 1.0], "slow": [1.0, 1.0]})


def test_median_interval_takes_the_order_statistics_that_reach_95_percent() -> None:
    # Five values: no pair reaches 95%, so min and max, which hold the median with 1 - 2/32.
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, 0.9375)
    assert median_interval([1.0] * 6)[2] == 0.96875  # from six on, 95% or more
    # Nine: the 2nd smallest and 2nd largest (1 - 2 * 10/512 = 0.961); the 3rd would cover 0.820.
    low, high, coverage = median_interval([float(v) for v in range(9, 0, -1)])
    assert (low, high) == (2.0, 8.0) and coverage == pytest.approx(0.9609375)
    low, high, coverage = median_interval([float(v) for v in range(40)])
    assert (low, high) == (13.0, 26.0) and coverage == pytest.approx(0.9615, abs=1e-4)  # k = 14 of 40


def test_zero_rounds_is_one_line_and_exit_2(capsys) -> None:
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "--suite", "quickstart", "--rounds", "0", "--device", "cpu"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --rounds is 0; use --rounds >= 1 (or --kernels-only to time nothing)\n"


def test_paired_steps_alternates_methods_on_the_same_blocks(tmp_path, fmnist_dir, capsys) -> None:
    suite = tiny_suite(tmp_path / "steps.yaml", methods=["softmax", "dnc", "etf"])
    argv = ["--suite", str(suite), "--dim", "4", "--rounds", "3", "--paired-steps", "2", "--device", "cpu"]
    run([*argv, "--data-dir", str(fmnist_dir)])
    out = capsys.readouterr().out
    assert "etf: skipped (NotApplicable" in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("round")] == [
        "round 1",
        "round 2",
        "round 3",
    ]  # one line per round, every method's block in it
    assert "round 3: softmax " in out and ", dnc " in out
    assert "each a block of the same 2 batches for every method" in out
    rows = _rows(out.split("softmax/it")[-1])
    assert set(rows) == {"softmax", "dnc"} and rows["dnc"][4] in {"ok", "SLOWER", "undecided"}


def test_paired_steps_below_one_is_one_line_and_exit_2(capsys) -> None:
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "--suite", "quickstart", "--paired-steps", "0", "--device", "cpu"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --paired-steps is 0; use --paired-steps >= 1 (steps per timed block)\n"
