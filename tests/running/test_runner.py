"""The runner: grid expansion, config identity, skipping, n/a and failed cells, worker processes."""

import dataclasses
import io
import json
import os
import socket
import subprocess
import sys
import threading
from signal import SIGTERM

import pytest
import torch

from protobench.core.progress import PlainReporter
from protobench.engine import loop as engine
from protobench.running import locks
from protobench.running.grid import cell_config, expand, planned_cells
from protobench.running.runner import RunOptions, run_suite
from protobench.store import records as results
from protobench.store.host import cpu_model
from protobench.store.records import config_hash
from protobench.suite.definition import load_suite
from tests.conftest import minimal_record, tiny_suite

CPU = torch.device("cpu")


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
    kwargs = dict(results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU))
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

    def flaky(spec, data, **kw):
        if spec.dim == 2:
            raise FloatingPointError("training loss became nan in epoch 1")
        return real(spec, data, **kw)

    monkeypatch.setattr(engine, "train_cell", flaky)
    options = RunOptions(data_dir=fmnist_dir, device=CPU)
    summary = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (summary.failed, summary.trained) == (1, 1)
    failed = [r for r in records(tmp_path / "res") if r["status"] == "error"]
    assert failed[0]["reason"] == "FloatingPointError: training loss became nan in epoch 1"
    monkeypatch.setattr(engine, "train_cell", real)
    retry = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (retry.skipped, retry.trained) == (1, 1)  # the failed cell is retried


def test_keep_checkpoints_keeps_the_final_state_beside_the_record(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["dl2pa"], dims=[3], train={"epochs": 2})))
    options = RunOptions(data_dir=fmnist_dir, device=CPU, keep_checkpoints=True)
    assert run_suite(suite, results_dir=tmp_path / "res", options=options).trained == 1
    (record,) = records(tmp_path / "res")
    folder = tmp_path / "res" / suite.name / "dl2pa"
    state = torch.load(folder / record["checkpoint"], weights_only=True)
    assert {"prototypes", "assignment", "representatives"} <= set(state["method"])
    assert state["method"]["prototypes"].shape == (10, 3) and state["config"]["method"] == "dl2pa"
    assert {"backbone", "optimizer", "rng", "mixup_rng"} <= set(state) and state["loop"]["epoch"] == 2
    assert not list(folder.glob("*.ckpt-*.pt")) and not list(folder.glob("*.lock"))  # only the final one


def _comparable(record):
    """A record without what legitimately differs between two runs: times, speeds, the worker's name."""
    history = [{k: v for k, v in row.items() if k != "images_per_second"} for row in record["history"]]
    metrics = {k: v for k, v in record["metrics"].items() if k != "train_images_per_second"}
    return {**record, "history": history, "metrics": metrics, "timings": None, "finished_at": None}


def test_two_workers_write_the_records_one_process_writes_and_a_failing_cell_is_recorded(tmp_path, fmnist_dir):
    # dl2pa-bad trains at lr 1e30 (a valid suite: the lr is finite and positive): its numbers overflow inside a
    # worker's cell, which is recorded as failed, and the other cells finish, each with the numbers one process gives.
    bad = {"dl2pa-bad": {"method": "dl2pa"}}
    path = tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa", "dl2pa-bad"], train={"epochs": 1}, variants=bad,
                      method_recipes={"dl2pa-bad": {"lr": 1.0e30}})  # fmt: skip
    suite = load_suite(str(path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the thread count of each worker below: the same numbers
        one = run_suite(suite.with_overrides(methods=["softmax", "dl2pa"]), results_dir=tmp_path / "one",
                        options=RunOptions(data_dir=fmnist_dir, device=CPU))  # fmt: skip
        torch.set_num_threads(2)  # two workers of one thread each
        two = run_suite(
            suite, results_dir=tmp_path / "two", options=RunOptions(data_dir=fmnist_dir, device=CPU), jobs=2
        )
    finally:
        torch.set_num_threads(threads)
    assert (one.trained, two.trained, two.failed) == (4, 4, 2)
    a = records(tmp_path / "one")
    b = [r for r in records(tmp_path / "two") if r["method"] != "dl2pa-bad"]
    assert [_comparable(r) for r in a] == [_comparable(r) for r in b]
    assert {r["device"] for r in b} == {"cpu (1 threads)"}
    assert {r["cpu"] for r in b} == {cpu_model()}  # the host, for the report's mixed-hosts note
    failed = [r for r in records(tmp_path / "two") if r["method"] == "dl2pa-bad"]
    assert len(failed) == 2 and {r["status"] for r in failed} == {"error"}
    assert failed[0]["reason"].startswith("FloatingPointError: ")  # the loss, or the scores at evaluation
    assert "Traceback" in failed[0]["traceback"]


def test_missing_data_stops_the_run_before_any_cell_fails(tmp_path, monkeypatch):
    from protobench.core.errors import UserError
    from protobench.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path / "no-system-copy"))
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2, 4])))
    with pytest.raises(UserError, match="data not found"):
        run_suite(suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=tmp_path / "nothing", device=CPU))
    assert not list((tmp_path / "res").glob("*/*/*.json"))


def test_a_method_recipe_changes_that_method_s_config_hash_only(tmp_path):
    plain = load_suite(str(tiny_suite(tmp_path / "a.yaml", methods=["softmax", "dl2pa"])))
    tuned = load_suite(str(tiny_suite(tmp_path / "b.yaml", methods=["softmax", "dl2pa"],
                                      method_recipes={"dl2pa": {"lr": 0.01}})))  # fmt: skip
    for cell in expand(plain):
        a = cell_config(plain, cell, deterministic=False, precision="fp32")
        b = cell_config(tuned, cell, deterministic=False, precision="fp32")
        if cell.method == "dl2pa":
            assert b["train"]["lr"] == 0.01 and a["train"]["lr"] == 0.05
            assert config_hash(a) != config_hash(b)
        else:
            assert config_hash(a) == config_hash(b)


def test_records_carry_the_recipe_each_method_trained_with(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa"], dims=[2],
                                      train={"epochs": 1, "lr": 0.05},
                                      method_recipes={"dl2pa": {"lr": 0.01}})))  # fmt: skip
    assert (
        run_suite(suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU)).trained == 2
    )
    by_method = {r["method"]: r for r in records(tmp_path / "res")}
    assert by_method["dl2pa"]["config"]["train"]["lr"] == 0.01
    assert by_method["softmax"]["config"]["train"]["lr"] == 0.05
    # The optimiser really used it: the history's lr is the cosine factor times the method's lr.
    assert by_method["dl2pa"]["history"][0]["lr"] / by_method["softmax"]["history"][0]["lr"] == pytest.approx(0.2)


# ---------------------------------------------------------------- long runs (docs/long-runs.md)


class SignalAfterEpoch(PlainReporter):
    """Sends this process ``signum`` when epoch ``epoch`` (1-based) of the first cell ends."""

    def __init__(self, signum: int, epoch: int) -> None:
        super().__init__(stream=io.StringIO())
        self.signum, self.epoch, self.sent = signum, epoch, False

    def end_epoch(self, epoch: int, stats: dict) -> None:
        super().end_epoch(epoch, stats)
        if epoch + 1 == self.epoch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def test_sigterm_checkpoints_the_cell_and_the_next_run_resumes_it_exactly(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["dl2pa"], dims=[3], train={"epochs": 3})))
    options = RunOptions(data_dir=fmnist_dir, device=CPU, deterministic=True)
    reference = run_suite(suite, results_dir=tmp_path / "ref", options=options)
    assert reference.trained == 1
    stopped = run_suite(suite, results_dir=tmp_path / "res", options=options, reporter=SignalAfterEpoch(SIGTERM, 1))
    assert stopped.interrupted == SIGTERM and stopped.trained == 0
    folder = tmp_path / "res" / suite.name / "dl2pa"
    (left,) = folder.iterdir()  # the checkpoint at the end of epoch 1; no record, no lock
    assert torch.load(left, weights_only=True)["loop"]["epoch"] == 1 and ".ckpt-" in left.name
    reporter = PlainReporter(stream=io.StringIO())
    resumed = run_suite(suite, results_dir=tmp_path / "res", options=options, reporter=reporter)
    assert (resumed.resumed, resumed.trained, resumed.interrupted) == (1, 1, None)
    assert "resuming from the end of epoch 1/3" in reporter.stream.getvalue()
    assert _comparable(records(tmp_path / "res")[0]) == _comparable(records(tmp_path / "ref")[0])
    assert not list(folder.glob("*.ckpt-*.pt"))


def test_restart_discards_the_checkpoint(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2], train={"epochs": 2})))
    options = RunOptions(data_dir=fmnist_dir, device=CPU)
    run_suite(suite, results_dir=tmp_path / "res", options=options, reporter=SignalAfterEpoch(SIGTERM, 1))
    again = run_suite(suite, results_dir=tmp_path / "res", options=dataclasses.replace(options, restart=True))
    assert (again.resumed, again.trained) == (0, 1)


def test_a_non_finite_loss_fails_its_cell_with_the_epoch_and_the_grid_goes_on(tmp_path, fmnist_dir, monkeypatch):
    from protobench.heads.softmax import Softmax

    real = Softmax.loss

    def diverging(self, h, y):
        return real(self, h, y) * (float("nan") if self.dim == 2 else 1.0)

    monkeypatch.setattr(Softmax, "loss", diverging)
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2, 4])))
    summary = run_suite(suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU))
    assert (summary.failed, summary.trained) == (1, 1)
    failed, ok = records(tmp_path / "res")
    assert (failed["status"], failed["dim"], failed["failed_epoch"]) == ("error", 2, 1)
    assert failed["reason"] == "FloatingPointError: training loss became nan in epoch 1"
    assert ok["status"] == "ok" and ok["dim"] == 4


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2], train={"epochs": 1})))
    (planned,) = planned_cells(suite, tmp_path / "res", deterministic=False, device=CPU)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = locks.lock_path(planned.path)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "started_at": "x", "token": "t"}))
    summary = run_suite(
        suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU, wait=False)
    )
    assert (summary.trained, summary.locked) == (1, 0) and not lock.exists()


def test_a_cell_locked_by_a_live_process_is_skipped_without_wait_and_waited_for_with_it(tmp_path, fmnist_dir,
                                                                                          monkeypatch):  # fmt: skip
    monkeypatch.setattr(locks, "WAIT_POLL_S", 0.2)  # look again every 0.2 s, not 5
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2, 4], train={"epochs": 1})))
    first, second = planned_cells(suite, tmp_path / "res", deterministic=False, device=CPU)
    held = locks.try_lock(first.path)  # another process's lock, as far as the runner can tell
    assert isinstance(held, locks.CellLock)
    reporter = PlainReporter(stream=io.StringIO())
    options = RunOptions(data_dir=fmnist_dir, device=CPU, wait=False)
    summary = run_suite(suite, results_dir=tmp_path / "res", options=options, reporter=reporter)
    assert (summary.trained, summary.locked) == (1, 1) and "skipped: locked by host" in reporter.stream.getvalue()
    # With --wait the run waits; here the holder finishes the cell meanwhile: it is not trained again.
    done = minimal_record(config=first.config)
    threading.Timer(0.5, lambda: (results.write_record(first.path, done), held.release())).start()
    waited = run_suite(suite, results_dir=tmp_path / "res", options=dataclasses.replace(options, wait=True))
    assert (waited.trained, waited.skipped, waited.locked) == (0, 2, 0)


def test_a_corrupt_checkpoint_is_reported_and_the_cell_starts_over(tmp_path, fmnist_dir, capsys):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", dims=[2], train={"epochs": 2})))
    options = RunOptions(data_dir=fmnist_dir, device=CPU)
    run_suite(suite, results_dir=tmp_path / "res", options=options, reporter=SignalAfterEpoch(SIGTERM, 1))
    (checkpoint,) = (tmp_path / "res").rglob("*.ckpt-*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:64])
    capsys.readouterr()
    again = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (again.resumed, again.trained) == (0, 1)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: checkpoint {checkpoint} is unreadable (")
    assert err.endswith("the cell starts over\n") and err.count("\n") == 1


def test_each_degenerate_prototype_set_is_one_warning(tmp_path, fmnist_dir, capsys):
    # EBV's K=10 vectors in d=2 are 18 degrees apart at the closest, half of what HPN reaches (36): the same
    # set at both seeds, one warning. Random unit vectors differ per seed: one warning for each seed's set.
    variants = {"dl2pa-random": {"method": "dl2pa", "options": {"prototype_kind": "random"}}}
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["ebv", "dl2pa", "dl2pa-random"], dims=[2],
                                      seeds=[0, 1], variants=variants, train={"epochs": 1})))  # fmt: skip
    run_suite(suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and "ebv" in warnings[0] and "d=2" in warnings[0], warnings
    assert [w.split("angle ")[1].split(" deg")[0] for w in warnings[1:]] == ["0.42", "13.44"], warnings


# ---------------------------------------------------------------- variants and reuse (docs/ablations.md)


def test_a_variant_s_config_is_its_method_s_with_its_options(tmp_path):
    variants = {
        "dl2pa-t2": {"method": "dl2pa", "options": {"t": 2}},
        "dl2pa-t10": {"method": "dl2pa", "options": {"t": 10}},
    }
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["dl2pa", "dl2pa-t2", "dl2pa-t10"], dims=[2],
                                      variants=variants)))  # fmt: skip
    by_row = {p.cell.method: p for p in planned_cells(suite, tmp_path / "res", deterministic=False, device=CPU)}
    assert by_row["dl2pa-t10"].config["method"] == "dl2pa" and by_row["dl2pa-t10"].config["method_options"]["t"] == 10
    assert by_row["dl2pa-t10"].digest != by_row["dl2pa"].digest
    # t=2 is dl2pa's default: the same experiment, so the same config and hash, under its own row's folder.
    assert by_row["dl2pa-t2"].config == by_row["dl2pa"].config
    assert by_row["dl2pa-t2"].path.parent.name == "dl2pa-t2"


def test_variants_train_with_their_options_under_their_own_rows(tmp_path, fmnist_dir):
    variants = {"dl2pa-t10": {"method": "dl2pa", "options": {"t": 10}}}
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", methods=["dl2pa", "dl2pa-t10"], dims=[2],
                                      train={"epochs": 1}, variants=variants)))  # fmt: skip
    assert (
        run_suite(suite, results_dir=tmp_path / "res", options=RunOptions(data_dir=fmnist_dir, device=CPU)).trained == 2
    )
    by_row = {r["method"]: r for r in records(tmp_path / "res")}
    assert by_row["dl2pa-t10"]["config"]["method"] == "dl2pa"
    assert (
        by_row["dl2pa-t10"]["method_hyperparameters"]["t"] == 10.0
        and by_row["dl2pa"]["method_hyperparameters"]["t"] == 2.0
    )
    # Other prototypes, other numbers: the option reached the head.
    assert by_row["dl2pa-t10"]["metrics"] != by_row["dl2pa"]["metrics"]


def test_a_cell_whose_config_is_finished_elsewhere_is_reused_not_trained(tmp_path, fmnist_dir):
    first = load_suite(str(tiny_suite(tmp_path / "first.yaml", methods=["softmax"], dims=[2], train={"epochs": 1})))
    second = load_suite(str(tiny_suite(tmp_path / "second.yaml", methods=["softmax", "etf"], dims=[2],
                                       train={"epochs": 1})))  # fmt: skip
    store = tmp_path / "res"
    assert run_suite(first, results_dir=store, options=RunOptions(data_dir=fmnist_dir, device=CPU)).trained == 1
    summary = run_suite(second, results_dir=store, options=RunOptions(data_dir=fmnist_dir, device=CPU))
    assert (summary.reused, summary.trained, summary.not_applicable) == (1, 0, 1)
    original, copy = (results.load_record(next((store / s / "softmax").glob("*.json"))) for s in ("first", "second"))
    assert copy["reused_from"] == f"first/softmax/{next((store / 'first' / 'softmax').glob('*.json')).name}"
    assert (copy["suite"], copy["method"]) == ("second", "softmax")
    assert copy["metrics"] == original["metrics"] and copy["config_hash"] == original["config_hash"]
    assert (store / "second" / "softmax" / copy["embeddings"]).is_file()  # d <= 3: its embedding sample too
    # A record that is itself a copy is not reused again: with the original gone, the cell trains.
    (store / "first").rename(tmp_path / "gone")
    third = load_suite(str(tiny_suite(tmp_path / "third.yaml", methods=["softmax"], dims=[2], train={"epochs": 1})))
    assert run_suite(third, results_dir=store, options=RunOptions(data_dir=fmnist_dir, device=CPU)).trained == 1
    # --no-reuse trains although third's record is an original now.
    fourth = load_suite(str(tiny_suite(tmp_path / "fourth.yaml", methods=["softmax"], dims=[2], train={"epochs": 1})))
    assert (
        run_suite(fourth, results_dir=store, options=RunOptions(data_dir=fmnist_dir, device=CPU, reuse=False)).trained
        == 1
    )
    assert "reused_from" not in results.load_record(next((store / "fourth" / "softmax").glob("*.json")))


def test_a_failed_record_is_not_reused(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "a.yaml", methods=["softmax"], dims=[2], train={"epochs": 1})))
    planned = planned_cells(suite, tmp_path / "res", deterministic=False, device=CPU)[0]
    failed = planned.path.parent.parent.parent / "elsewhere" / "softmax" / planned.path.name
    failed.parent.mkdir(parents=True)
    record = minimal_record(config_hash=planned.digest, config=planned.config)
    failed.write_text(json.dumps({**record, "status": "error"}))
    assert results.find_twin(tmp_path / "res", planned.digest, planned.path) is None
    failed.write_text(json.dumps(record))
    assert results.find_twin(tmp_path / "res", planned.digest, planned.path) == failed
