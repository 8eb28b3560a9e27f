"""Live curves (protobench/running/loggers.py, docs/live-curves.md): TensorBoard event files read back, wandb against
a stand-in module, a failing logger, worker processes, and nothing imported without --log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from protobench.core.errors import UserError
from protobench.running.loggers import CellLogs, LogSpec, TensorBoardLogger, parse_logs
from protobench.running.runner import RunOptions, run_suite
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite

CPU = torch.device("cpu")


def scalars_of(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard run folder ``run``: tag -> [(step, value)], as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def records_by_run(store: Path, suite: str) -> dict[str, dict]:
    """The store's ok records of ``suite`` by their run name (``<suite>/<row>/<record stem>``)."""
    return {p.relative_to(store).with_suffix("").as_posix(): json.loads(p.read_text())
            for p in sorted((store / suite).glob("*/*.json"))}  # fmt: skip


def test_parse_logs_defaults_targets_and_refusals(tmp_path, monkeypatch):
    store = tmp_path / "res"
    assert parse_logs([], store) == ()
    assert parse_logs(["tensorboard", "tensorboard"], store) == (LogSpec("tensorboard", str(store / "tensorboard")),)
    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))  # "installed"
    assert parse_logs(["tensorboard:tb", "wandb", "wandb:mine"], store) == (
        LogSpec("tensorboard", "tb"), LogSpec("wandb", "protobench"), LogSpec("wandb", "mine"))  # fmt: skip
    for value, says in (("tensorbored", "--log 'tensorbored' is unknown; use tensorboard, tensorboard:DIR, wandb"),
                        ("tensorboard:", "--log tensorboard:: nothing after ':'; give a folder"),
                        ("wandb:a/b", "--log wandb:a/b: a wandb project name cannot hold")):  # fmt: skip
        with pytest.raises(UserError, match="^" + says.replace("(", r"\(").replace("?", r"\?")):
            parse_logs([value], store)
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: find_spec says so without importing anything
    with pytest.raises(UserError, match=r"^--log wandb needs the wandb package, which is not installed; "
                                        r"pip install 'protobench\[wandb\]'$"):  # fmt: skip
        parse_logs(["wandb"], store)


def test_tensorboard_event_files_hold_each_cells_history(run_cli, tmp_path, fmnist_dir):
    """`run --log tensorboard`: one run folder per cell under <results>/tensorboard, and TensorBoard reads back
    every history key but `epoch` as a tag, at steps 1..epochs, with the record's values."""
    suite = tiny_suite(tmp_path / "tb.yaml", methods=["softmax", "dl2pa"], dims=[2])
    store = tmp_path / "res"
    code, out, err = run_cli("run", suite, "--results", store, "--data-dir", fmnist_dir, "--device", "cpu",
                             "--log", "tensorboard")  # fmt: skip
    assert code == 0, err
    assert f"live curves: TensorBoard event files under {store / 'tensorboard'}" in out
    stored = records_by_run(store, "tb")
    assert len(stored) == 2
    for run, record in stored.items():
        folder = store / "tensorboard" / run
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        scalars = scalars_of(folder)
        history = record["history"]
        assert set(scalars) == set(history[0]) - {"epoch"}
        for tag, points in scalars.items():
            assert [step for step, _ in points] == [row["epoch"] for row in history] == [1, 2]
            assert [value for _, value in points] == pytest.approx([row[tag] for row in history], rel=1e-6)
    assert "assignment_changed" in scalars_of(store / "tensorboard" / next(r for r in stored if "/dl2pa/" in r))


def test_a_resumed_cell_shows_one_curve(tmp_path):
    """A second process logging a cell from epoch 3 on hides the first one's epoch 3 (TensorBoard's purge)."""
    first = TensorBoardLogger(tmp_path)
    first.open("s/softmax/d2_s0_x", "s", {}, 1)
    for epoch in (1, 2, 3):
        first.log(epoch, {"train_loss": float(epoch)})
    first.close()
    second = TensorBoardLogger(tmp_path)
    second.open("s/softmax/d2_s0_x", "s", {}, 3)
    for epoch in (3, 4):
        second.log(epoch, {"train_loss": 10.0 + epoch})
    second.close()
    assert scalars_of(tmp_path / "s/softmax/d2_s0_x")["train_loss"] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_a_failing_writer_warns_once_and_the_cells_finish(tmp_path, fmnist_dir, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    def broken(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml")))
    options = RunOptions(data_dir=fmnist_dir, device=CPU, log=(LogSpec("tensorboard", str(tmp_path / "tb")),))
    summary = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (summary.trained, summary.failed) == (2, 0)
    assert {r["status"] for r in records_by_run(tmp_path / "res", "s").values()} == {"ok"}
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert warnings == ["warning: --log tensorboard failed (OSError: No space left on device); "
                        "it is off for the rest of this process"]  # fmt: skip


def test_every_worker_writes_its_cells_event_files(tmp_path, fmnist_dir):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", train={"epochs": 1})))
    options = RunOptions(data_dir=fmnist_dir, device=CPU, log=(LogSpec("tensorboard", str(tmp_path / "tb")),))
    assert run_suite(suite, results_dir=tmp_path / "res", options=options, jobs=2).trained == 2
    runs = records_by_run(tmp_path / "res", "s")
    assert len(runs) == 2
    for run, record in runs.items():
        assert scalars_of(tmp_path / "tb" / run)["test_accuracy"] == [
            (1, pytest.approx(record["history"][0]["test_accuracy"], rel=1e-6))
        ]


class FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module that records what the logger asks of it."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.calls: list[tuple] = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs["project"], kwargs["name"], kwargs["group"], os.environ.get("WANDB_MODE")))
        assert "dim" in kwargs["config"] and "train" in kwargs["config"]
        module = self

        class Run:
            def log(self, scalars, step):
                module.calls.append(("log", step, sorted(scalars)))

            def finish(self):
                module.calls.append(("finish",))

        return Run()


def test_wandb_gets_one_run_per_cell_in_offline_mode(tmp_path, fmnist_dir, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    suite = load_suite(str(tiny_suite(tmp_path / "w.yaml")))
    (spec,) = parse_logs(["wandb:mine"], tmp_path / "res")
    options = RunOptions(data_dir=fmnist_dir, device=CPU, log=(spec,))
    assert run_suite(suite, results_dir=tmp_path / "res", options=options).trained == 2
    runs = records_by_run(tmp_path / "res", "w")
    tags = sorted(set(next(iter(runs.values()))["history"][0]) - {"epoch"})
    expected = []
    for run in runs:
        expected += [("init", "mine", run, "w", "offline"), ("log", 1, tags), ("log", 2, tags), ("finish",)]
    assert fake.calls == expected


def test_loggers_are_switched_off_one_by_one():
    """An open that fails switches off that logger alone; the other one logs on."""
    calls = []

    class Broken:
        def open(self, *args):
            raise RuntimeError("wandb.errors.UsageError: api_key not configured (no-tty)")

    class Works:
        def open(self, run, group, config, first_epoch):
            calls.append(("open", run, first_epoch))

        def log(self, epoch, scalars):
            calls.append(("log", epoch, scalars))

        def close(self):
            calls.append(("close",))

    warned = []
    specs = (LogSpec("wandb", "p"), LogSpec("tensorboard", "tb"))
    logs = CellLogs(specs, warned.append, make=lambda spec: Broken() if spec.kind == "wandb" else Works())
    for run in ("s/a/x", "s/b/y"):
        logs.start_cell(run, "s", {})
        logs.log_epoch({"epoch": 2, "train_loss": 0.5})
    logs.end_cell()
    assert calls == [("open", "s/a/x", 2), ("log", 2, {"train_loss": 0.5}), ("close",),
                     ("open", "s/b/y", 2), ("log", 2, {"train_loss": 0.5}), ("close",)]  # fmt: skip
    assert warned == ["--log wandb failed (RuntimeError: wandb.errors.UsageError: api_key not configured (no-tty)); "
                      "it is off for the rest of this process"]  # fmt: skip


def test_nothing_is_imported_without_log(tmp_path, fmnist_dir):
    """A run without --log imports neither TensorBoard's writer nor wandb (a fresh interpreter, so that no
    other test's imports count)."""
    suite = tiny_suite(tmp_path / "s.yaml", dims=[2], train={"epochs": 1})
    script = f"""
import sys, torch
from protobench.running.runner import RunOptions, run_suite
from protobench.suite.definition import load_suite
options = RunOptions(data_dir={str(fmnist_dir)!r}, device=torch.device("cpu"))
assert run_suite(load_suite({str(suite)!r}), results_dir={str(tmp_path / "res")!r}, options=options).trained == 1
print(sorted(m for m in sys.modules if m.startswith(("torch.utils.tensorboard", "tensorboard", "wandb"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
