"""Tuning: the grid, the selection rule (validation only), and the tuning cells in the store."""

import math

import pytest
import torch

from protobench.core.errors import UserError
from protobench.engine import loop as engine
from protobench.engine.loop import CellOutcome
from protobench.methods import NotApplicable
from protobench.running import tuning
from protobench.running.runner import RunOptions
from protobench.running.tuning import GridPoint, grid_points, tune
from protobench.store import records as results
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite

CPU = torch.device("cpu")

# Known answers: (method, lr) -> validation accuracy of seeds 0 and 1, and a test accuracy that
# would pick another lr if tuning ever selected on it.
VAL = {
    # seed 0 alone would pick 0.01; the mean over seeds picks 0.03.
    ("softmax", 0.01): (80.0, 70.0), ("softmax", 0.03): (78.0, 74.0), ("softmax", 0.1): (60.0, 61.0),
    # a tie between 0.01 and 0.03: the first in grid order wins.
    ("dl2pa", 0.01): (50.0, 52.0), ("dl2pa", 0.03): (52.0, 50.0), ("dl2pa", 0.1): (40.0, 41.0),
    # 0.1 is best but one of its cells fails (diverged): it is not eligible.
    ("hpn", 0.01): (30.0, 31.0), ("hpn", 0.03): (33.0, 34.0), ("hpn", 0.1): (90.0, None),
}  # fmt: skip
TEST = {0.01: 10.0, 0.03: 20.0, 0.1: 99.0}


class NoTestKeys(dict):
    """Record metrics that fail the test if anyone reads a test accuracy from them."""

    def __getitem__(self, key):
        assert not key.startswith("test"), f"tuning read {key}"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert not key.startswith("test"), f"tuning read {key}"
        return super().get(key, default)


@pytest.fixture
def stub_training(monkeypatch):
    """train_cell answers from VAL/TEST by the lr the method's recipe gives it; etf is n/a at d=2."""
    calls = []

    def fake(spec, data, **kwargs):
        method, dim, seed, lr = spec.method, spec.dim, spec.seed, spec.train.lr
        calls.append((method, dim, seed, lr))
        if method == "etf":
            if dim == 2:
                raise NotApplicable("ETF needs d >= K-1")
            val = {0.01: 60.0, 0.03: 70.0, 0.1: 65.0}[lr] + seed
        else:
            val = VAL[(method, lr)][seed]
        if val is None:
            raise FloatingPointError("training loss became nan in epoch 1")
        metrics = {"val_accuracy": val, "test_accuracy": TEST[lr], "test_accuracy_at_best_val": TEST[lr]}
        return CellOutcome(metrics, [], [], {}, {"wall_seconds": 1.0, "train_seconds": 1.0})

    monkeypatch.setattr(engine, "train_cell", fake)
    real_read = results.read_record

    def guarded(path):
        record = real_read(path)
        if record is not None and "metrics" in record:
            record["metrics"] = NoTestKeys(record["metrics"])
        return record

    monkeypatch.setattr(results, "read_record", guarded)
    return calls


def test_grid_points_order_and_errors():
    points = grid_points([0.1, 0.01], [0.0, 1e-4])
    assert [p.changes() for p in points] == [
        {"lr": 0.1, "weight_decay": 0.0}, {"lr": 0.1, "weight_decay": 1e-4},
        {"lr": 0.01, "weight_decay": 0.0}, {"lr": 0.01, "weight_decay": 1e-4},
    ]  # fmt: skip
    assert points[1].label() == "lr=0.1 wd=0.0001" and grid_points([0.03], None)[0].label() == "lr=0.03"
    for lrs, wds, message in (
        (None, None, "give a grid"),
        ([0.1, -1.0], None, "--lr values must be > 0"),
        ([0.0], None, "--lr values must be > 0 and finite, got 0;"),  # 0 is no lr: the weights never move
        ([math.nan], None, "--lr values must be > 0 and finite, got nan;"),
        ([0.1, 0.1], None, "--lr lists a value twice"),
        (None, [-1e-4], "--weight-decay values must be >= 0"),
        ([0.1], [math.inf], "--weight-decay values must be >= 0 and finite, got inf;"),
    ):
        with pytest.raises(UserError, match=message):
            grid_points(lrs, wds)


def test_tune_picks_the_best_validation_mean_and_never_reads_test(tmp_path, fmnist_dir, stub_training):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa", "hpn", "etf"],
                                      dims=[2, 9], seeds=[0, 1])))  # fmt: skip
    grid = grid_points([0.01, 0.03, 0.1], None)
    options = RunOptions(data_dir=fmnist_dir, device=CPU)
    result = tune(suite, grid, results_dir=tmp_path / "res", options=options)
    assert result.chosen == {
        "softmax": GridPoint(lr=0.03),  # mean over seeds, not seed 0's best
        "dl2pa": GridPoint(lr=0.01),  # tie: first in grid order
        "hpn": GridPoint(lr=0.03),  # 0.1 had a failed cell
        "etf": GridPoint(lr=0.03),  # chosen on d=9 alone; d=2 is n/a at every point
    }
    # softmax's 0.03 and etf's are inside the grid; dl2pa's 0.01 is its smallest value.
    assert result.at_grid_edge() == {"dl2pa": "lr=0.01 (the smallest)"}
    softmax = result.trials["softmax"][1]
    assert softmax.mean == pytest.approx((78 + 74 + 78 + 74) / 4) and len(softmax.values) == 4
    hpn_high = result.trials["hpn"][2]
    assert (hpn_high.failed, hpn_high.eligible) == (2, False)  # seed 1 fails at both dims
    assert result.trials["etf"][0].not_applicable == 2 and len(result.trials["etf"][0].values) == 2
    # Ordinary cells under their own suite name, each with the lr it trained with; a rerun skips them.
    stored = list(results.iter_records(tmp_path / "res"))
    assert {r["suite"] for r in stored} == {"s-tune"} and len(stored) == 3 * 4 * 2 * 2
    assert {r["config"]["train"]["lr"] for r in stored if r["method"] == "dl2pa"} == {0.01, 0.03, 0.1}
    trained = len(stub_training)
    again = tune(suite, grid, results_dir=tmp_path / "res", options=options)
    # Only the failed cells are retried (and fail again); the choice is the same.
    assert len(stub_training) - trained == 2 and again.chosen == result.chosen


def test_a_method_with_no_eligible_point_keeps_its_recipe(tmp_path, fmnist_dir, stub_training):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["etf", "softmax"], dims=[2], seeds=[0])))
    result = tune(suite, grid_points([0.01, 0.03], None), results_dir=tmp_path / "res",
                  options=RunOptions(data_dir=fmnist_dir, device=CPU))  # fmt: skip
    assert result.chosen == {"etf": None, "softmax": GridPoint(lr=0.01)}
    text = tuning.tuned_suite_yaml(result, tmp_path / "s-tuned.yaml", "protobench tune s.yaml --lr 0.01,0.03")
    assert "etf: lr=0.01 -, lr=0.03 - -> none eligible: keeps the suite recipe" in text
    assert "# At the grid's edge (the best may lie beyond it; extend the grid to know): softmax lr=0.01" in text
    assert "etf" not in load_suite(str(write(tmp_path / "s-tuned.yaml", text))).method_recipes


def test_a_grid_point_overrides_the_suite_s_own_method_recipe(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa"],
                                      method_recipes={"dl2pa": {"lr": 0.2, "weight_decay": 0.0}})))  # fmt: skip
    trial = tuning.trial_suite(suite, GridPoint(lr=0.003))
    assert trial.name == "s-tune"
    assert trial.recipe_for("dl2pa").lr == 0.003 and trial.recipe_for("dl2pa").weight_decay == 0.0
    assert trial.recipe_for("softmax").lr == 0.003 and trial.recipe_for("softmax").weight_decay == 5e-4


def test_tuning_refuses_a_suite_without_a_validation_split(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", val_size=0)))
    with pytest.raises(UserError, match="no validation split"):
        tuning.check_tunable(suite)
    assert load_suite("imagenet-lt").has_validation  # its own val list, with val_size 0
    assert not load_suite("cifar100").has_validation and load_suite("quickstart").has_validation


def test_the_written_suite_includes_the_tuned_one_by_the_shortest_stable_name(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml")))
    assert tuning.include_reference(suite, tmp_path / "s-tuned.yaml") == "s.yaml"
    assert tuning.include_reference(suite, tmp_path / "sub" / "t.yaml") == "../s.yaml"
    shipped = load_suite("quickstart")
    assert tuning.include_reference(shipped, tmp_path / "t.yaml") == "quickstart"


def write(path, text):
    path.write_text(text)
    return path


def test_a_grid_point_with_a_missing_cell_is_not_eligible_however_good_its_mean():
    low, high = GridPoint(lr=0.01), GridPoint(lr=0.1)
    complete = tuning.Trial(low, values=[70.0, 72.0])
    unfinished = tuning.Trial(high, values=[95.0], missing=1)  # one of its cells never ran (locked, killed)
    assert complete.eligible and not unfinished.eligible
    assert tuning.choose([complete, unfinished]) == low
    assert tuning.choose([unfinished]) is None
