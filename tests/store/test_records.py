import json
import os

import pytest

from protobench.store import records as results
from tests.conftest import minimal_record


def test_config_hash_is_canonical():
    assert results.config_hash({"a": 1, "b": [1, 2]}) == results.config_hash({"b": [1, 2], "a": 1})
    assert results.config_hash({"a": 1}) != results.config_hash({"a": 2})


def test_cell_path_layout(tmp_path):
    path = results.cell_path(tmp_path, "cifar10-lt", "dl2pa", 64, 2, 100.0, "abcdef0123456789")
    assert path == tmp_path / "cifar10-lt" / "dl2pa" / "d64_s2_r100_abcdef0123.json"
    assert results.cell_path(tmp_path, "q", "softmax", 2, 0, None, "ff" * 8).name == "d2_s0_ffffffffff.json"


def test_atomic_write_leaves_old_record_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "s" / "m" / "d2_s0_x.json"
    results.write_record(path, {"status": "ok", "value": 1})
    assert json.loads(path.read_text())["value"] == 1

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        results.write_record(path, {"status": "ok", "value": 2})
    assert json.loads(path.read_text())["value"] == 1  # the finished record is intact
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_is_finished_only_for_ok_and_na(tmp_path):
    from protobench.running.grid import spec_for
    from protobench.suite.definition import load_suite

    config = spec_for(load_suite("quickstart"), "softmax", 2).config()
    ok, na, err, half = (tmp_path / f"{n}.json" for n in ("ok", "na", "err", "half"))
    results.write_record(ok, minimal_record(config=config))
    results.write_record(na, minimal_record(status="n/a", config=config))
    results.write_record(err, minimal_record(status="error", config=config))
    half.write_text('{"status": "o')
    assert results.is_finished(ok) and results.is_finished(na)
    assert not results.is_finished(err) and not results.is_finished(half)
    assert not results.is_finished(tmp_path / "missing.json")


def test_iter_records_by_suite(tmp_path):
    results.write_record(tmp_path / "a" / "m" / "r.json", minimal_record(suite="a"))
    results.write_record(tmp_path / "b" / "m" / "r.json", minimal_record(suite="b"))
    assert [r["suite"] for r in results.iter_records(tmp_path)] == ["a", "b"]
    assert [r["suite"] for r in results.iter_records(tmp_path, ["b"])] == ["b"]


def test_unreadable_records_are_skipped_and_reported_with_the_reason(tmp_path):
    results.write_record(tmp_path / "a" / "m" / "ok.json", minimal_record(suite="a"))
    broken = {"cut.json": '{"suite": "a", "sta', "empty.json": "", "list.json": "[1, 2]"}
    for name, text in broken.items():
        (tmp_path / "a" / "m" / name).write_text(text)
    (tmp_path / "a" / "m" / "binary.json").write_bytes(b"\xff\xfe\x00")
    heard: dict[str, str] = {}
    found = list(results.iter_records(tmp_path, None, lambda path, why: heard.setdefault(path.name, why)))
    assert found == [minimal_record(suite="a")]
    assert heard == {
        "binary.json": "not UTF-8 text",
        "cut.json": "not valid JSON: Unterminated string at line 1",
        "empty.json": "empty file",
        "list.json": "JSON list, not an object",
    }
    for name in heard:  # the runner's view: not finished, so the cell trains again and overwrites the file
        assert results.read_record(tmp_path / "a" / "m" / name) is None
        assert not results.is_finished(tmp_path / "a" / "m" / name)
    assert len(list(results.iter_records(tmp_path))) == 1  # without a callback: skipped silently


def test_versions_name_everything():
    assert set(results.versions()) == {"python", "torch", "torchvision", "protobench"}


def test_git_commit_says_when_the_code_differs_from_the_commit(tmp_path):
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)  # fmt: skip

    assert results.git_commit(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "protobench").mkdir()
    (tmp_path / "protobench" / "engine.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("a\n")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    clean = results.git_commit(tmp_path)
    assert clean is not None and len(clean) == 40
    (tmp_path / "notes.txt").write_text("b\n")  # not code: still the commit
    assert results.git_commit(tmp_path) == clean
    (tmp_path / "protobench" / "engine.py").write_text("x = 2\n")
    assert results.git_commit(tmp_path) == f"{clean}-dirty"


def _outcome():
    from protobench.engine.loop import CellOutcome

    return CellOutcome(
        metrics={"test_accuracy": 50.0},
        per_class_accuracy=[100.0, 50.0, 0.0],
        history=[{"epoch": 1}],
        method_hyperparameters={"t": 2.0},
        timings={"wall_seconds": 1.0, "train_seconds": 0.5},
    )


def _new(ratio):
    import dataclasses

    from protobench.running.grid import spec_for
    from protobench.store.records import new_record
    from protobench.suite.definition import load_suite

    spec = dataclasses.replace(spec_for(load_suite("quickstart"), "dl2pa", 3, 1), imbalance_ratio=ratio)
    data = {"source": "here", "counts": {"train": [500, 50, 5], "val": [0, 0, 0], "test": [5, 5, 5]}}
    return new_record(suite="s", column="3", spec=spec, digest="abc", data=data, provenance={"device": "cpu"})


def test_records_are_built_from_the_schema():
    from protobench.store.records import RECORD_KEYS, complete, config_hash, failed, not_applicable

    balanced, long_tailed, na, error = _new(None), _new(100.0), _new(None), _new(None)
    assert balanced["setting_hash"] == config_hash({k: v for k, v in balanced["config"].items() if k != "seed"})
    assert (balanced["method"], balanced["dim"], balanced["seed"]) == ("dl2pa", 3, 1)
    assert balanced["numerics"] == {"engine": 1, "data": 1, "backbone/smallcnn": 1, "method/dl2pa": 1,
                                    "prototypes/uniform": 1}  # fmt: skip
    complete(balanced, _outcome())
    complete(long_tailed, _outcome(), checkpoint="x.pt")
    not_applicable(na, "ETF needs d >= K-1")
    try:
        raise FloatingPointError("loss became nan")
    except FloatingPointError as caught:
        failed(error, caught)
    for record in (balanced, long_tailed, na, error):
        assert set(record) <= set(RECORD_KEYS), set(record) - set(RECORD_KEYS)
        assert record["finished_at"]
    assert balanced["status"] == "ok" and "shot_groups" not in balanced and "checkpoint" not in balanced
    assert long_tailed["checkpoint"] == "x.pt"
    groups = long_tailed["shot_groups"]["by_count"]  # 500 many, 50 medium, 5 few images
    assert (groups["many"], groups["medium"], groups["few"]) == (100.0, 50.0, 0.0)
    assert na["status"] == "n/a" and na["reason"] == "ETF needs d >= K-1"
    assert error["reason"] == "FloatingPointError: loss became nan" and "Traceback" in error["traceback"]


def test_class_names_come_from_the_record_then_the_dataset_code_then_numbers():
    from protobench.store.records import class_names

    stored = {"dataset": "cifar10", "data": {"counts": {"train": [1, 1, 1]}, "class_names": ["cat", "", "dog"]}}
    assert class_names(stored) == ["cat", "class 1", "dog"]  # an empty name is numbered
    old_fashion = {"dataset": "fashion-mnist", "data": {"counts": {"train": [5] * 10}}}  # made before names
    assert class_names(old_fashion)[0] == "T-shirt/top" and class_names(old_fashion)[9] == "Ankle boot"
    old_cifar = {"dataset": "cifar10", "per_class_accuracy": [50.0] * 10}  # names only in CIFAR's meta file
    assert class_names(old_cifar) == [f"class {c}" for c in range(10)]
    assert class_names({"dataset": "gone"}, 2) == ["class 0", "class 1"]  # a dataset no longer registered
    assert class_names({}, 3) == ["class 0", "class 1", "class 2"]
    assert class_names(old_fashion, 12)[10:] == ["class 10", "class 11"]  # more classes than names: numbered


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"metrics": "91.2"}, "'metrics' is a str, not an object"),
        ({"metrics": {"test_accuracy": float("nan")}}, "metrics.test_accuracy is nan, not a finite number"),
        ({"metrics": {"test_accuracy": "91"}}, "metrics.test_accuracy is a str, not a number"),
        ({"metrics": {}}, "a finished record without metrics.test_accuracy"),
        ({"dim": "2"}, "'dim' is a str, not int"),
        ({"seed": True}, "'seed' is a bool, not int"),
        ({"status": "done"}, "status 'done' is none of ok, n/a, error"),
        ({"history": [{"train_loss": float("inf")}]}, "history[0].train_loss is inf, not a finite number"),
        ({"per_class_accuracy": [1.0, None, "x"]}, "per_class_accuracy[2] is a str, not a number"),
        ({"config": []}, "'config' is a list, not an object"),
    ],
)
def test_a_record_failing_the_schema_is_unreadable_with_the_reason(tmp_path, change, why):
    path = tmp_path / "s" / "softmax" / "r.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(minimal_record(**change)))  # json writes NaN and Infinity as Python reads them
    heard: dict[str, str] = {}
    assert list(results.iter_records(tmp_path, None, lambda p, reason: heard.setdefault(p.name, reason))) == []
    assert heard == {"r.json": why} and results.read_record(path) is None


def test_a_record_without_identity_is_unreadable(tmp_path):
    path = tmp_path / "r.json"
    record = minimal_record()
    del record["method"]
    path.write_text(json.dumps(record))
    with pytest.raises(results.UnreadableRecord, match="no 'method'"):
        results.load_record(path)


@pytest.mark.parametrize(
    ("suite", "method"), [("../../escape", "softmax"), ("ok", "../.."), ("a/b", ".."), ("..", "x"), ("/abs", "m")]
)
def test_cell_path_refuses_a_name_that_resolves_outside_the_store_by_its_own_check(tmp_path, suite, method):
    # Suite files are checked when loaded (suites.check_path_part), but cell_path is the store's last word:
    # whatever calls it with whatever names, nothing lands outside <root>/<suite>/<row>/.
    from protobench.core.errors import UserError

    with pytest.raises(UserError, match=r"the record would be written outside --results .*; use plain names"):
        results.cell_path(tmp_path / "store", suite, method, 2, 0, None, "ab" * 8)
