"""The graph-vs-eager check: its comparison, and its refusal off CUDA."""

from __future__ import annotations

import pytest
import torch

from protobench.bench.graphs import compare, differences
from protobench.data.prepare import prepare_cell_data
from protobench.engine.loop import train_cell
from protobench.running.grid import spec_for
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite


def test_differences_finds_every_change_and_nothing_else(tmp_path, fmnist_dir) -> None:
    suite = load_suite(str(tiny_suite(tmp_path / "g.yaml")))
    data = prepare_cell_data(suite.data_settings, fmnist_dir, None)
    cpu = torch.device("cpu")
    a, b = (
        train_cell(spec_for(suite, "dl2pa", 4, 0, precision="fp32"), data, device=cpu, cuda_graphs=True)
        for _ in range(2)
    )
    assert differences(a, b) == []  # on the CPU both run eagerly: the same training twice
    b.history[-1]["test_accuracy"] += 0.01
    b.state["method"]["representatives"][0, 0] += 1e-6
    found = differences(a, b)
    assert len(found) == 2
    assert found[0].startswith(f"epoch {len(a.history)} test_accuracy:")
    assert found[1].startswith("method.representatives: max |difference|")


def test_compare_reports_each_method_or_why_it_is_not_applicable(tmp_path, fmnist_dir) -> None:
    suite = load_suite(str(tiny_suite(tmp_path / "c.yaml", methods=["softmax", "etf"])))
    data = prepare_cell_data(suite.data_settings, fmnist_dir, None)
    outcome = compare(suite, data, 4, torch.device("cpu"))
    assert outcome["etf"] == "ETF needs d >= K-1 (K=10, d=4)"
    found, speeds = outcome["softmax"]
    assert found == [] and len(speeds) == 2 and min(speeds) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cpu"], "error: --device cpu: CUDA graphs exist only on CUDA"),
        (["--suite", "fashion-mnist-lt", "--ratio", "7"], "error: --ratio 7: suite fashion-mnist-lt has ratios"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message) -> None:
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["graphs", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
