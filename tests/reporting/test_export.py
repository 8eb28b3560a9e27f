"""The store as tidy tables (protobench/reporting/export.py, docs/export.md): the columns and their types are
pinned, nothing is dropped (failed, stale, unreadable records are marked), and a groupby over the export
gives `report`'s cells for every committed table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from protobench.api import load_results
from protobench.methods import METHODS
from protobench.reporting import export as tidy
from protobench.reporting.report import build_tables
from protobench.suite.definition import load_suite

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = yaml.safe_load((ROOT / "results" / "claims.yaml").read_text())

#: The records table's columns and types as users' scripts rely on them: change one here only on purpose.
PINNED = """
suite:string dataset:string method:string variant:string dim:Int64 seed:Int64 imbalance_ratio:Float64
column:string status:string reason:string failed_epoch:Int64 stale:boolean stale_parts:string
current_setting:boolean backbone:string loss:string epochs:Int64 batch_size:Int64 optimizer:string lr:Float64
weight_decay:Float64 momentum:Float64 schedule:string warmup_epochs:Float64 mixup_alpha:Float64
precision:string method_options:string test_accuracy:Float64 test_accuracy_at_best_val:Float64
val_accuracy:Float64 best_val_accuracy:Float64 best_val_epoch:Int64 train_accuracy:Float64 train_loss:Float64
train_images_per_second:Float64 nc1:Float64 ece:Float64 class_mean_cosine_mean:Float64
class_mean_cosine_std:Float64 class_mean_anchor_cosine:Float64 anchor_min_angle_degrees:Float64
assignment_changes:Float64 final_rep_proto_cosine:Float64 many_shot_accuracy:Float64
medium_shot_accuracy:Float64 few_shot_accuracy:Float64 git_commit:string numerics:string device:string
cpu:string cpu_capability:string threads:Int64 gpu:string code_digest:string prototype_digest:string
cuda_graphs:boolean world_size:Int64 python_version:string torch_version:string
protobench_version:string wall_seconds:Float64 train_seconds:Float64 finished_at:datetime64[ns,UTC]
config_hash:string setting_hash:string reused_from:string path:string
"""


def pinned() -> list[tuple[str, str]]:
    return [tuple(item.split(":", 1)) for item in PINNED.split()]


def dtypes(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(name, str(dtype).replace(" ", "")) for name, dtype in frame.dtypes.items()]


@pytest.fixture
def store(tmp_path) -> Path:
    """Suite fashion-mnist-tuned's softmax d = 2 records (committed), one of them turned into a failed cell,
    and a file that is not a record."""
    store = tmp_path / "res"
    target = store / "fashion-mnist-tuned" / "softmax"
    target.mkdir(parents=True)
    for path in sorted((ROOT / "results" / "fashion-mnist-tuned" / "softmax").glob("d2_s*.json")):
        shutil.copy(path, target / path.name)
    failed = sorted(target.glob("d2_s4_*.json"))[0]
    record = json.loads(failed.read_text())
    for key in ("metrics", "per_class_accuracy", "history", "diagnostics", "timings"):
        record.pop(key)
    record.update(status="error", reason="FloatingPointError: loss is nan", failed_epoch=3)
    failed.write_text(json.dumps(record))
    (target / "d2_s9_0000000000.json").write_text('{"suite": "fashion-mnist-tuned", "dim": 2')
    return store


def test_the_records_table_has_the_pinned_columns_and_types(store) -> None:
    frame = load_results(store)
    classes = [c for c in frame.columns if c.startswith(tidy.CLASS_PREFIX)]
    assert dtypes(frame.drop(columns=classes)) == pinned()
    assert list(tidy.RECORD_COLUMNS) == [name for name, _ in pinned()]
    assert classes[:2] == ["class_accuracy:T-shirt/top", "class_accuracy:Trouser"] and len(classes) == 10
    assert dtypes(tidy.records_table([])) == pinned()  # an empty store: the same columns and types


def test_nothing_is_dropped_and_each_state_is_marked(store) -> None:
    frame = load_results(store)
    assert len(frame) == 6 and frame["status"].tolist() == ["ok"] * 4 + ["error", "unreadable"]
    failed = frame[frame["status"] == "error"].iloc[0]
    assert failed["reason"] == "FloatingPointError: loss is nan" and failed["failed_epoch"] == 3
    assert pd.isna(failed["test_accuracy"]) and failed["lr"] == 0.1  # softmax's tuned lr
    unreadable = frame[frame["status"] == "unreadable"].iloc[0]
    assert unreadable["suite"] == "fashion-mnist-tuned" and unreadable["variant"] == "softmax"
    assert unreadable["reason"].startswith("not valid JSON") and unreadable["path"].endswith("d2_s9_0000000000.json")
    assert not frame["stale"].any() and frame.loc[frame["status"] != "unreadable", "current_setting"].all()


def test_a_record_made_by_older_numerics_is_marked_stale(store, monkeypatch) -> None:
    monkeypatch.setattr(METHODS.get("softmax"), "numerics_version", 2)
    frame = load_results(store)
    readable = frame[frame["status"] != "unreadable"]
    assert readable["stale"].all() and set(readable["stale_parts"]) == {"method/softmax 1 -> 2"}


def test_an_older_setting_of_a_cell_is_kept_and_not_current(store) -> None:
    folder = store / "fashion-mnist-tuned" / "softmax"
    older = json.loads(sorted(folder.glob("d2_s0_*.json"))[0].read_text())
    older.update(setting_hash="an older recipe", finished_at="2020-01-01T00:00:00+00:00")
    (folder / "d2_s0_1111111111.json").write_text(json.dumps(older))
    frame = load_results(store)
    old = frame[frame["setting_hash"] == "an older recipe"]
    assert len(old) == 1 and not old["current_setting"].iloc[0]
    assert frame.loc[frame["setting_hash"] != "an older recipe", "current_setting"].sum() == 5  # the others


def test_the_history_and_classes_tables(store) -> None:
    history = load_results(store, table="history")
    assert list(history.columns[:14]) == list({**tidy.IDENTITY, **tidy.STATE})
    assert len(history) == 4 * 5 and history["epoch"].tolist()[:5] == [1, 2, 3, 4, 5]
    record = json.loads(sorted((store / "fashion-mnist-tuned" / "softmax").glob("d2_s0_*.json"))[0].read_text())
    first = history[history["seed"] == 0].sort_values("epoch")
    assert first["test_accuracy"].tolist() == [row["test_accuracy"] for row in record["history"]]
    classes = load_results(store, table="classes")
    assert len(classes) == 4 * 10 and str(classes["class_index"].dtype) == "Int64"
    seed0 = classes[classes["seed"] == 0]
    assert seed0["accuracy"].tolist() == record["per_class_accuracy"]
    assert seed0["train_count"].tolist() == record["data"]["counts"]["train"]
    assert seed0["class_name"].iloc[-1] == "Ankle boot"


@pytest.mark.parametrize("table", CLAIMS["tables"], ids=[t["out"] for t in CLAIMS["tables"]])
def test_a_groupby_of_the_export_gives_report_s_cells(table) -> None:
    """For every committed table: finished records of the current setting, grouped by variant and column,
    give the mean, std and n that `report` prints."""
    store = ROOT / table["results"]
    # a table's suite is a shipped one by name or a store's pinned suite file (results/gpu/suites/)
    loaded = [load_suite(str(ROOT / s) if s.endswith(".yaml") else s) for s in table["suites"]]
    suites = {suite.name: suite for suite in loaded}
    frame = load_results(store, list(suites))
    records = [json.loads(Path(p).read_text()) for p in frame.loc[frame["status"] != "unreadable", "path"]]
    checked = 0
    keys = {"final": "test_accuracy", "val-selected": "test_accuracy_at_best_val"}
    for metric in (keys[name] for name in table["metric"].split(",")):
        for built in build_tables(records, suites, metrics=[metric]):
            shown = frame[(frame["suite"] == built.suite) & (frame["status"] == "ok") & frame["current_setting"]]
            groups = shown.dropna(subset=[metric]).groupby(["variant", "column"])[metric]
            mine = groups.agg(["mean", "std", "count"])
            cells = built.cells[built.cells["status"] == "ok"].set_index(["method", "column"])
            assert set(mine.index) == set(cells.index), f"{built.suite} {metric}: other cells than report's"
            for key, cell in cells.iterrows():
                assert mine.loc[key, "count"] == cell["n"]
                assert mine.loc[key, "mean"] == pytest.approx(cell["mean"], abs=1e-9)
                assert (0.0 if cell["n"] == 1 else mine.loc[key, "std"]) == pytest.approx(cell["std"], abs=1e-9)
                checked += 1
    assert checked > 0
