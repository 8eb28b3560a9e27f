"""``run --pack N`` (protobench/running/packs.py): cells trained together write the records they write alone,
keep their failures and n/a to themselves, and a killed or stopped pack resumes every cell to the record of
an uninterrupted run."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.cli.test_long_runs import command, comparable, kill_at_a_checkpoint, start, wait_for_checkpoint
from tests.conftest import tiny_suite

TRAIN = {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, "mixup_alpha": 0.2, "flip": True}


def records(results: Path) -> dict[str, dict]:
    """The store's records by their path below it, without what differs between two runs of one cell (a
    finished one's timings; when any was written)."""
    found = {p.relative_to(results).as_posix(): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}
    return {key: comparable(r) if r["status"] == "ok" else {**r, "finished_at": None} for key, r in found.items()}


def test_packed_cells_write_their_solo_records_and_keep_failures_and_n_a_their_own(
    run_cli, tmp_path, fmnist_dir, monkeypatch
):
    from protobench.heads.softmax import Softmax

    real = Softmax.loss
    monkeypatch.setattr(Softmax, "loss", lambda self, h, y: real(self, h, y) * (float("nan") if self.dim == 2 else 1))
    suite = tiny_suite(tmp_path / "p.yaml", methods=["softmax", "dl2pa", "etf"], dims=[2, 3], train=TRAIN)
    solo = command(suite, tmp_path / "solo", fmnist_dir, "--deterministic")
    code, _, err = run_cli(*solo[3:])
    assert code == 1, err  # the NaN cell failed
    code, out, err = run_cli(*command(suite, tmp_path / "packed", fmnist_dir, "--deterministic", "--pack", "3")[3:])
    assert code == 1, err
    assert re.search(r"training 3 cells together: \[1/6\] [^,]+, \[2/6\] [^,]+, \[3/6\] ", out), out
    assert "] softmax d=2 s=0 error: FloatingPointError" in out
    assert "3 trained, 0 skipped, 2 n/a, 1 failed" in out
    packed, alone = records(tmp_path / "packed"), records(tmp_path / "solo")
    assert packed.keys() == alone.keys() and len(packed) == 6
    assert {k: v["status"] for k, v in packed.items()} == {k: v["status"] for k, v in alone.items()}
    assert sorted(v["status"] for v in packed.values()) == ["error", "n/a", "n/a", "ok", "ok", "ok"]
    for key in packed:  # every record as the cell alone writes it, but where and when it ran
        assert {**packed[key], "device": None, "host": None} == {**alone[key], "device": None, "host": None}, key


def test_packs_compose_with_jobs(run_cli, tmp_path, fmnist_dir):
    suite = tiny_suite(tmp_path / "j.yaml", methods=["softmax", "dl2pa"], dims=[2, 3], train={**TRAIN, "epochs": 1})
    # The same workers unpacked: a worker's thread count (the run's split between them) is part of its numbers.
    assert run_cli(*command(suite, tmp_path / "solo", fmnist_dir, "--deterministic", "--jobs", "2")[3:])[0] == 0
    code, out, err = run_cli(*command(suite, tmp_path / "packed", fmnist_dir, "--deterministic", "--pack", "2",
                                      "--jobs", "2")[3:])  # fmt: skip
    assert code == 0, err
    assert "done: 4 trained" in out  # (the workers print their packs to the terminal itself)
    packed, alone = records(tmp_path / "packed"), records(tmp_path / "solo")
    assert packed == alone


def test_a_pack_killed_mid_epoch_resumes_every_cell_to_its_uninterrupted_record(tmp_path, fmnist_dir, run_cli):
    suite = tiny_suite(tmp_path / "k.yaml", methods=["dl2pa", "softmax", "dnc"], dims=[3], train=TRAIN)
    run = command(suite, tmp_path / "res", fmnist_dir, "--deterministic", "--pack", "3", "--checkpoint-minutes",
                  "0.0001")  # fmt: skip
    kill_at_a_checkpoint(run, tmp_path / "res")
    code, out, err = run_cli(*run[3:])
    assert code == 0, err
    assert "resuming from" in out
    assert run_cli(*command(suite, tmp_path / "ref", fmnist_dir, "--deterministic")[3:])[0] == 0
    assert records(tmp_path / "res") == records(tmp_path / "ref")
    assert not list((tmp_path / "res").rglob("*.ckpt-*.pt")) and not list((tmp_path / "res").rglob("*.lock"))


def test_a_pack_stopped_by_sigterm_saves_every_cell_and_resumes_them(tmp_path, fmnist_dir, run_cli):
    train = {**TRAIN, "epochs": 40}
    suite = tiny_suite(tmp_path / "t.yaml", methods=["dl2pa", "softmax"], dims=[3], train=train)
    run = command(suite, tmp_path / "res", fmnist_dir, "--pack", "2", "--checkpoint-minutes", "0.0001")
    process = start(run)
    wait_for_checkpoint(tmp_path / "res", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    saved = {p.parent.name for p in (tmp_path / "res").rglob("*.ckpt-*.pt")}
    assert saved == {"dl2pa", "softmax"} and not list((tmp_path / "res").rglob("*.json"))
    code, out, err = run_cli(*run[3:])
    assert code == 0, err
    assert out.count("resuming from") == 2 and len(list((tmp_path / "res").rglob("*.json"))) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pack", "0"], "--pack 0: use 1 or more (cells trained together in one process), e.g. --pack 4"),
        (["--pack", "2", "--log", "tensorboard"], "--pack 2 with --log: live curves follow one cell at a time; "
                                                   "drop one of them"),
    ],
)  # fmt: skip
def test_bad_pack_flags_are_one_line(run_cli, tmp_path, fmnist_dir, flags, message):
    suite = tiny_suite(tmp_path / "b.yaml")
    code, _, err = run_cli(*command(suite, tmp_path / "res", fmnist_dir, *flags)[3:])
    assert code == 2 and err.strip().splitlines() == [f"error: {message}"]
