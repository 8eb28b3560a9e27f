"""``bench pack``: the fused (stacked) model computes each cell exactly, trains each at its own lr, and the
command prints and writes every (strategy, N) or refuses bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from protobench.bench import packing

CPU = torch.device("cpu")
#: Tolerance of the float64 training check: two SGD steps of the fused model against each cell's own.
#: The fused loss sums the cells' mean losses and the grouped convolutions add in another order, so the
#: parameters may differ in the last bits only (about 1e-16 measured); 1e-12 leaves room and would still
#: catch a wrong learning rate, weight decay or momentum term by many orders of magnitude.
TRAIN_ATOL = 1e-12
#: The small CNN at a tiny width, so the CLI tests take seconds on a busy CPU.
TINY_CLI = ["--device", "cpu", "--shapes", "smallcnn-fmnist", "--batch", "8", "--steps", "1", "--warmup", "1",
            "--threads", "1"]  # fmt: skip


def float64_setting(shape: str, batch: int) -> packing.Setting:
    return packing.Setting(packing.SHAPES[shape], batch, CPU, dtype=torch.float64)


def cell_slice(stacked: torch.Tensor, n: int, i: int) -> torch.Tensor:
    """Cell i's part of a tensor whose first dimension stacks N cells (Conv2d, BatchNorm: N*C; Linear: N)."""
    return stacked.detach().chunk(n)[i]


@pytest.mark.parametrize(("shape", "batch"), [("smallcnn-fmnist", 6), ("resnet32-cifar", 2)])
def test_fused_forward_equals_each_cells_own_forward(shape, batch) -> None:
    setting = float64_setting(shape, batch)
    lrs = [0.1, 0.02]
    cells = [packing.Cell(setting, i, lr) for i, lr in enumerate(lrs)]
    fused = packing.FusedCells(setting, lrs)
    classes = setting.shape.classes
    for train in (True, False):  # batch statistics, then the running statistics the training pass updated
        fused.backbone.train(train)
        logits = fused.logits()
        assert logits.shape == (batch, 2 * classes) and logits.dtype == torch.float64
        for i, cell in enumerate(cells):
            cell.backbone.train(train)
            torch.testing.assert_close(logits[:, i * classes : (i + 1) * classes], cell.logits(), rtol=0, atol=1e-12)
    norms = [m for m in fused.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    for i, cell in enumerate(cells):  # each cell kept its own running statistics
        own = [m for m in cell.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(own) == len(norms)
        for stacked, single in zip(norms, own, strict=True):
            torch.testing.assert_close(cell_slice(stacked.running_mean, 2, i), single.running_mean, rtol=0, atol=1e-12)
            torch.testing.assert_close(cell_slice(stacked.running_var, 2, i), single.running_var, rtol=0, atol=1e-12)


def test_fused_convolutions_are_grouped_per_cell() -> None:
    backbones = [packing.make_model(float64_setting("smallcnn-fmnist", 2), i)[0] for i in range(3)]
    fused = packing.fuse(backbones)
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    singles = [m for m in backbones[0].modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.groups) for c in convs] == [
        (3 * s.in_channels, 3 * s.out_channels, 3 * s.groups) for s in singles
    ]
    assert isinstance(fused.fc, packing.StackedLinear) and fused.fc.weight.shape == (3, 16, 64)


def test_fused_training_with_per_cell_lr_equals_each_cells_own_sgd() -> None:
    setting = float64_setting("smallcnn-fmnist", 4)
    lrs = [0.2, 0.02]  # a tenfold difference: the fused optimiser must give each cell its own
    cells = [packing.Cell(setting, i, lr) for i, lr in enumerate(lrs)]
    fused = packing.FusedCells(setting, lrs)
    other_lr = packing.Cell(setting, 1, lrs[0])  # cell 1 as it would train at cell 0's lr
    for _ in range(2):  # the second step uses the momentum buffers of the first (Nesterov)
        fused.step()
        for cell in (*cells, other_lr):
            cell.step()
    stacked = {**dict(fused.backbone.named_parameters()), **{f"head.{k}": v for k, v in fused.head.named_parameters()}}
    for i, cell in enumerate(cells):
        own = {**dict(cell.backbone.named_parameters()), **{f"head.{k}": v for k, v in cell.head.named_parameters()}}
        assert own.keys() == stacked.keys()
        for name, param in own.items():
            fused_part = cell_slice(stacked[name], 2, i).reshape(param.shape)
            torch.testing.assert_close(fused_part, param.detach(), rtol=0, atol=TRAIN_ATOL, msg=name)
    # The check can tell learning rates apart: at cell 0's lr, cell 1's head would be far from the fused one's.
    gap = (cell_slice(fused.head.weight, 2, 1).reshape(other_lr.head.weight.shape) - other_lr.head.weight).abs().max()
    assert gap > 1e6 * TRAIN_ATOL


def test_fuse_refuses_a_layer_it_cannot_stack() -> None:
    with pytest.raises(TypeError, match="cannot fuse LayerNorm"):
        packing.fuse([nn.Sequential(nn.LayerNorm(4)), nn.Sequential(nn.LayerNorm(4))])


def test_table_has_every_n_and_strategy_and_json_the_figures(run_cli, tmp_path) -> None:
    out_file = tmp_path / "out" / "pack.json"
    code, out, err = run_cli("bench", "pack", *TINY_CLI, "--n", "1,2", "--json", out_file)
    assert code == 0, err
    for text in ("N=1", "N=2", *packing.STRATEGIES, "no CUDA streams on the CPU: ran as sequential",
                 "CUDA graphs exist only on CUDA", "(1.00x)", f"wrote {out_file}"):  # fmt: skip
        assert text in out, text
    result = json.loads(out_file.read_text())
    assert result["n"] == [1, 2] and result["strategies"] == list(packing.STRATEGIES) and result["device"] == "cpu"
    rows = {(row["strategy"], row["n"]): row for row in result["rows"]}
    assert set(rows) == {(s, n) for s in packing.STRATEGIES for n in (1, 2)}
    for (strategy, n), row in rows.items():
        assert row["shape"] == "smallcnn-fmnist"
        if strategy.endswith("graphs"):
            assert row["status"] == "skipped" and "CUDA" in row["note"]
        else:
            assert row["status"] == "ok" and row["images_per_s"] == pytest.approx(n * 8 * 1 / row["seconds"])
            assert row["ratio_to_sequential_n1"] > 0
    assert rows[("sequential", 1)]["ratio_to_sequential_n1"] == 1.0
    shape = result["shapes"]["smallcnn-fmnist"]
    assert shape["baseline_images_per_s"] == rows[("sequential", 1)]["images_per_s"]
    assert (shape["backbone"], shape["backbone_options"], shape["batch"]) == ("smallcnn", packing.SHAPES[
        "smallcnn-fmnist"].options, 8)  # fmt: skip
    assert err.count("smallcnn-fmnist ") == 10  # a progress line per measurement, on stderr


def test_quick_and_a_baseline_measured_when_not_asked_for(run_cli) -> None:
    code, out, _ = run_cli("bench", "pack", *TINY_CLI, "--quick", "--strategies", "fused")
    assert code == 0 and "N=1" in out and "N=2" in out and "N=4" not in out and "│ sequential" not in out
    assert "ratio to sequential N=1 (" in out and "not measured" not in out
    from protobench.bench.__main__ import main  # python -m protobench.bench pack alike

    main(["pack", *TINY_CLI, "--n", "3", "--strategies", "streams"])


BAD = [
    (["--strategies", "sequental"], "error: --strategies: unknown 'sequental' (did you mean 'sequential'?)"),
    (["--shapes", "resnet99"], "error: --shapes: unknown 'resnet99'"),
    (["--n", "0"], "error: argument --n: '0' is not a whole number >= 1"),
    (["--n", "1,x"], "error: argument --n: 'x' is not a whole number >= 1"),
    (["--steps", "0"], "error: --steps is 0; use --steps >= 1"),
    (["--device", "tpu"], "error: --device 'tpu' is not a device"),
]


@pytest.mark.parametrize(("args", "start"), BAD)
def test_bad_input_is_one_line_and_exit_2(run_cli, args, start) -> None:
    code, out, err = run_cli("bench", "pack", "--device", "cpu", *args)
    assert code == 2 and out == "" and err.startswith(start) and err.count("\n") == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_one_line(run_cli) -> None:
    code, out, err = run_cli("bench", "pack", "--device", "cuda", "--quick")
    assert code == 2 and out == "" and err.startswith("error: --device cuda: no CUDA device") and err.count("\n") == 1
    from protobench.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["pack", "--device", "cuda"])
    assert exit_info.value.code == 2


def test_listed_under_bench(run_cli) -> None:
    code, out, _ = run_cli("bench", "--help")
    assert code == 0 and "pack" in out
