import json

import torch

from protobench import engine
from protobench.runner import RunOptions, cell_config, expand, run_suite
from protobench.suites import load_suite
from tests.conftest import tiny_suite


def records(root):
    return sorted(
        (json.loads(p.read_text()) for p in root.glob("*/*/*.json")),
        key=lambda r: (r["method"], r["dim"], r["seed"]),
    )


def test_grid_order_and_config_identity(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa"], seeds=[0, 1])))
    cells = expand(suite)
    assert len(cells) == 2 * 2 * 2 and cells[0].dim == 2 and cells[-1].dim == 4
    assert [c.method for c in cells[:4]] == ["softmax", "softmax", "dl2pa", "dl2pa"]
    config = cell_config(suite, cells[2], deterministic=False, precision="fp32")
    assert config["method_options"]["momentum"] == 0.9  # documented defaults are resolved into the record
    assert "device" not in config


def test_run_writes_records_skips_finished_and_records_na(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "etf"], dims=[2, 9])))
    kwargs = dict(results_dir=tmp_path / "res", options=RunOptions(fmnist_dir, "cpu"))
    summary = run_suite(suite, **kwargs)
    assert (summary.total, summary.trained, summary.not_applicable, summary.failed) == (4, 3, 1, 0)
    stored = records(tmp_path / "res")
    na = [r for r in stored if r["status"] == "n/a"]
    assert len(na) == 1 and na[0]["method"] == "etf" and na[0]["dim"] == 2
    assert "ETF needs d >= K-1 (K=10, d=2)" in na[0]["reason"]
    ok = next(r for r in stored if r["status"] == "ok")
    for key in ("config", "config_hash", "setting_hash", "metrics", "per_class_accuracy", "history", "timings",
                "versions", "device", "finished_at", "method_hyperparameters"):  # fmt: skip
        assert key in ok
    again = run_suite(suite, **kwargs)
    assert (again.skipped, again.trained) == (4, 0)
    # Another recipe is another setting: a new record, the old one kept.
    longer = suite.with_overrides(epochs=1, methods=["softmax"], dims=[2])
    assert run_suite(longer, **kwargs).trained == 1
    assert len(list((tmp_path / "res" / suite.name / "softmax").glob("*.json"))) == 3


def test_failing_cell_is_recorded_and_grid_goes_on(tmp_path, fmnist_dir, monkeypatch):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2, 4])))
    real = engine.train_cell

    def flaky(suite, data, method, dim, seed, **kw):
        if dim == 2:
            raise FloatingPointError("training loss became nan in epoch 1")
        return real(suite, data, method, dim, seed, **kw)

    monkeypatch.setattr(engine, "train_cell", flaky)
    options = RunOptions(fmnist_dir, "cpu")
    summary = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (summary.failed, summary.trained) == (1, 1)
    failed = [r for r in records(tmp_path / "res") if r["status"] == "error"]
    assert failed[0]["reason"] == "FloatingPointError: training loss became nan in epoch 1"
    monkeypatch.setattr(engine, "train_cell", real)
    retry = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (retry.skipped, retry.trained) == (1, 1)  # the failed cell is retried


def test_checkpoints_hold_the_method_state(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["dl2pa"], dims=[3], train={"epochs": 1})))
    options = RunOptions(fmnist_dir, "cpu", save_checkpoints=True)
    assert run_suite(suite, results_dir=tmp_path / "res", options=options).trained == 1
    (record,) = records(tmp_path / "res")
    state = torch.load(tmp_path / "res" / suite.name / "dl2pa" / record["checkpoint"], weights_only=False)
    assert {"prototypes", "assignment", "representatives"} <= set(state["method"])
    assert state["method"]["prototypes"].shape == (10, 3) and state["config"]["method"] == "dl2pa"
    assert {"backbone", "optimizer"} <= set(state)
