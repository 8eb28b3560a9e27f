"""Packed training (protobench/engine/pack.py): cells trained in turns inside one process give exactly
their solo numbers in float64, keep their failures to themselves, and stop and resume like solo cells."""

import pytest
import torch

from protobench.data.prepare import prepare_cell_data
from protobench.engine.cell_state import Checkpointing, Interrupted, TrainingFailed
from protobench.engine.loop import train_cell
from protobench.engine.pack import PackMember, train_pack
from protobench.methods import NotApplicable
from protobench.running.grid import spec_for
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite
from tests.engine.test_loop import comparable

CPU = torch.device("cpu")
#: Mixup (whose partners come from the global generator), crops and flips: every source of randomness.
TRAIN = {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, "mixup_alpha": 0.2, "crop_padding": 2,
         "flip": True}  # fmt: skip
#: (method, dim, seed): heads of every kind, two of one method at different seeds, an ETF below d = K-1.
CELLS = [("dl2pa", 3, 0), ("softmax", 4, 1), ("dnc", 3, 2), ("softmax", 4, 0)]


@pytest.fixture
def pack_setting(tmp_path, fmnist_dir):
    methods = sorted({method for method, _, _ in CELLS} | {"etf"})
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=methods, train=TRAIN)))
    return suite, prepare_cell_data(suite.data_settings, fmnist_dir, None)


def specs(suite, cells=CELLS):
    return [spec_for(suite, method, dim, seed, precision="fp64", deterministic=True) for method, dim, seed in cells]


def test_packed_cells_give_their_solo_numbers_bit_for_bit_in_float64(pack_setting):
    suite, data = pack_setting
    solo = [comparable(train_cell(spec, data, device=CPU)) for spec in specs(suite)]
    packed = train_pack([PackMember(spec, data) for spec in specs(suite)], device=CPU)
    assert [comparable(outcome) for outcome in packed] == solo


def test_one_cells_failure_stays_its_own(pack_setting, monkeypatch):
    from protobench.heads.dnc import DNC

    suite, data = pack_setting
    real = DNC.step_loss

    def nan_loss(self, h, y):
        loss, memo = real(self, h, y)
        return loss * float("nan"), memo

    monkeypatch.setattr(DNC, "step_loss", nan_loss)
    cells = [("softmax", 4, 0), ("dnc", 3, 2), ("etf", 3, 0), ("dl2pa", 3, 0)]  # etf: 10 classes need d >= 9
    packed = train_pack([PackMember(spec, data) for spec in specs(suite, cells)], device=CPU)
    assert isinstance(packed[1], TrainingFailed) and isinstance(packed[1].cause, FloatingPointError)
    assert isinstance(packed[2], NotApplicable)
    solo = [comparable(train_cell(spec, data, device=CPU)) for spec in specs(suite, [cells[0], cells[3]])]
    assert [comparable(packed[0]), comparable(packed[3])] == solo


def test_a_stopped_pack_saves_every_cell_and_resumes_to_the_uninterrupted_numbers(pack_setting):
    suite, data = pack_setting
    reference = [comparable(outcome) for outcome in train_pack([PackMember(s, data) for s in specs(suite)],
                                                                   device=CPU)]  # fmt: skip
    saved: list[list[dict]] = [[] for _ in CELLS]
    asked: list[int] = []

    def stop() -> bool:  # asked once per step of each cell: the pack is stopped in its second epoch
        asked.append(1)
        return len(asked) >= 4 * 7

    members = [PackMember(spec, data, checkpointing=Checkpointing(saved[i].append, should_stop=stop))
               for i, spec in enumerate(specs(suite))]  # fmt: skip
    stopped = train_pack(members, device=CPU)
    assert all(isinstance(result, Interrupted) for result in stopped)
    assert all(states[-1]["loop"]["epoch"] == 1 and states[-1]["loop"]["batch"] > 0 for states in saved)
    resumed = train_pack([PackMember(spec, data, checkpointing=Checkpointing(lambda s: None, resume=states[-1]))
                          for spec, states in zip(specs(suite), saved, strict=True)], device=CPU)  # fmt: skip
    assert [comparable(outcome) for outcome in resumed] == reference


@pytest.mark.gpu
def test_packed_cells_give_their_solo_numbers_under_deterministic_kernels_on_the_gpu(pack_setting, gpu):
    # On CUDA each cell steps on its own stream and replays its own CUDA graph; with deterministic kernels
    # in float32 a packed cell's numbers must still be its solo numbers.
    suite, data = pack_setting
    cells = [spec_for(suite, method, dim, seed, precision="fp32", deterministic=True) for method, dim, seed in CELLS]
    solo = [comparable(train_cell(spec, data, device=gpu)) for spec in cells]
    packed = train_pack([PackMember(spec, data) for spec in cells], device=gpu)
    assert [comparable(outcome) for outcome in packed] == solo


@pytest.mark.gpu
def test_an_out_of_memory_cell_of_a_pack_fails_alone_on_the_gpu(pack_setting, gpu, monkeypatch):
    # A real CUDA out-of-memory error in one cell's first step; on the CPU in a rehearsal, the same error raised.
    from protobench.heads.softmax import Softmax
    from tests.cli.test_long_runs import out_of_memory_at_d2

    monkeypatch.setattr(Softmax, "loss", out_of_memory_at_d2(Softmax.loss))
    suite, data = pack_setting
    cells = [spec_for(suite, m, d, 0, precision="fp32") for m, d in (("softmax", 2), ("dl2pa", 3), ("softmax", 4))]
    packed = train_pack([PackMember(spec, data) for spec in cells], device=gpu)
    assert isinstance(packed[0], TrainingFailed) and isinstance(packed[0].cause, torch.cuda.OutOfMemoryError)
    assert all(outcome.metrics["test_accuracy"] is not None for outcome in packed[1:])
