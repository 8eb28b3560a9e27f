"""`protobench results check / prune / export`, and what a stale record does to `run`, `--reuse`, `report`
and `compare` (docs/engine.md, "Numerics versions"): a record made with an older version of one part is
retrained, never reused, marked, listed and prunable; an export writes every record, in each format, and
leaves the store as it was (docs/export.md)."""

from __future__ import annotations

import json

import pytest

from protobench.methods import METHODS
from tests.conftest import tiny_suite

TRAIN = {"epochs": 1, "batch_size": 32, "lr": 0.05}


@pytest.fixture
def store(run_cli, tmp_path, fmnist_dir, monkeypatch):
    """A store with suite `a`'s softmax d=2 cell trained, then softmax's numerics version bumped, so that
    record is one made by older code."""
    suite = tiny_suite(tmp_path / "a.yaml", dims=[2], seeds=[0, 1], train=TRAIN)
    args = ["--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu"]
    assert run_cli("run", suite, *args)[0] == 0
    monkeypatch.setattr(METHODS.get("softmax"), "numerics_version", 2)
    return suite, args, tmp_path / "res"


def test_a_stale_record_is_retrained_and_says_so_unless_kept(run_cli, store):
    suite, args, root = store
    code, out, _ = run_cli("run", suite, *args, "--keep-stale")
    assert code == 0 and "done: 0 trained, 2 skipped" in out
    assert "2 stale (made by older code), kept (--keep-stale)" in out
    code, out, _ = run_cli("run", suite, *args)
    assert code == 0 and "2 stale (made by older code), retraining" in out and "done: 2 trained" in out
    records = [json.loads(p.read_text()) for p in root.rglob("*.json")]
    assert [r["numerics"]["method/softmax"] for r in records] == [2, 2]


def test_a_stale_twin_is_not_reused(run_cli, store, tmp_path):
    _, args, root = store
    twin = tiny_suite(tmp_path / "b.yaml", dims=[2], seeds=[0, 1], train=TRAIN)  # the same configs as a's
    code, out, _ = run_cli("run", twin, *args)
    assert code == 0 and "done: 2 trained" in out and "reused" not in out


def test_report_and_compare_mark_a_table_holding_stale_records(run_cli, store, tmp_path):
    _, args, root = store
    code, out, _ = run_cli("report", "a", "--results", root)
    assert code == 0 and "STALE: 2 record(s) made by older code" in out
    dl2pa = tiny_suite(tmp_path / "a.yaml", dims=[2], seeds=[0, 1], methods=["softmax", "dl2pa"], train=TRAIN)
    assert run_cli("run", dl2pa, *args, "--keep-stale", "--methods", "dl2pa")[0] == 0
    code, out, _ = run_cli("compare", "a", "dl2pa", "softmax", "--results", root)
    assert code == 0 and "STALE: 2 record(s)" in " ".join(out.split())


def test_results_check_lists_stale_records_and_exits_1_and_prune_removes_them(run_cli, store):
    _, _, root = store
    code, out, err = run_cli("results", "check", "--results", root)
    stale = sorted(root.rglob("*.json"))
    assert code == 1 and len(stale) == 2
    for path in stale:
        assert f"stale       {path}: made by older code: method/softmax 1 -> 2" in out
    assert "2 stale, 0 failed, " in out and "0 mixed-host, 0 unreadable" in out and "results prune --stale" in err
    code, out, _ = run_cli("results", "prune", "--results", root, "--stale")
    assert code == 0 and "2 stale record(s) removed" in out and not list(root.rglob("*.json"))
    assert all(f"removed {path}" in out for path in stale)
    assert not list(root.rglob("*.npz"))  # the embedding samples went with them
    code, out, _ = run_cli("results", "check", "--results", root)
    assert code == 0 and out.startswith("0 stale")


def test_results_check_lists_failed_dirty_mixed_host_and_unreadable_records(run_cli, store):
    _, _, root = store
    first, second = sorted(root.rglob("*.json"))
    record = json.loads(first.read_text())
    record.update(status="error", reason="FloatingPointError: nan", git_commit="abc-dirty")
    first.write_text(json.dumps(record))
    record = json.loads(second.read_text())
    other = {**record, "cpu": "Another CPU", "host": {**record["host"], "cpu_model": "Another CPU"}}
    (root / "a" / "softmax" / "d3_s0_0000000000.json").write_text(json.dumps(other))
    (root / "a" / "softmax" / "d4_s0_0000000000.json").write_text("{cut")
    code, out, _ = run_cli("results", "check", "a", "--results", root)
    assert code == 1
    assert f"failed      {first}: FloatingPointError: nan" in out and f"dirty       {first}" in out
    assert "mixed-host" in out and "Another CPU" in out
    assert "unreadable  " in out and "d4_s0_0000000000.json: not valid JSON" in out
    assert run_cli("results", "prune", "--results", root)[0] == 2  # --stale must be said


def store_digest(root) -> dict:
    """Every file under ``root`` with its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_writes_one_row_per_record_in_each_format_and_leaves_the_store_alone(run_cli, tmp_path, fmt):
    import shutil
    from pathlib import Path

    import pandas as pd

    committed = Path(__file__).resolve().parents[2] / "results" / "quickstart"
    shutil.copytree(committed, tmp_path / "res" / "quickstart")
    (tmp_path / "res" / "quickstart" / "hpn" / "d2_s9_0000000000.json").write_text("{ cut")  # marked, not dropped
    before = store_digest(tmp_path / "res")
    out = tmp_path / "out" / f"records.{fmt}"
    code, said, err = run_cli("results", "export", "--results", tmp_path / "res", "--format", fmt, "--out", out)
    files = len(list((tmp_path / "res").rglob("*.json")))
    assert code == 0 and said == f"wrote {files} rows x 77 columns (records) to {out}\n" and err == ""
    frame = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt](out)
    assert len(frame) == files and frame["status"].tolist().count("unreadable") == 1
    assert set(frame["method"].dropna()) == {"softmax", "etf", "hpn", "ebv", "dnc", "dl2pa", "dl2pa-static",
                                             "hpn-dynamic"}  # fmt: skip
    if fmt == "parquet":  # parquet keeps the types
        assert str(frame["dim"].dtype) == "Int64" and str(frame["finished_at"].dtype) == "datetime64[ns, UTC]"
    assert store_digest(tmp_path / "res") == before


def test_export_history_and_long_tables_to_standard_output(run_cli):
    import io
    from pathlib import Path

    import pandas as pd

    results = Path(__file__).resolve().parents[2] / "results"
    code, out, _ = run_cli("results", "export", "quickstart", "--results", results, "--history",
                           "--columns", "method,dim,seed,epoch,test_accuracy")  # fmt: skip
    history = pd.read_csv(io.StringIO(out))
    assert code == 0 and list(history.columns) == ["method", "dim", "seed", "epoch", "test_accuracy"]
    assert set(history["epoch"]) == {1, 2} and history["test_accuracy"].notna().all()
    code, out, _ = run_cli("results", "export", "quickstart", "--results", results, "--long", "--format", "jsonl")
    classes = pd.read_json(io.StringIO(out), lines=True)
    assert code == 0 and set(classes["class_index"]) == set(range(10)) and "Ankle boot" in set(classes["class_name"])
    code, _, err = run_cli("results", "export", "--results", results, "--long", "--history")
    assert code == 2 and err == "error: --long and --history are two different tables; give one of them\n"
