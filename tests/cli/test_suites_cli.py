"""`protobench suites`, `suites show` and `run --dry-run`: a suite's cells and each method's resolved recipe,
read from the spec the engine trains with, and docs/recipes.md's table of every shipped suite kept equal to
what the code gives now."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from protobench.cli.suites import recipe_data
from protobench.heads import create_method
from protobench.methods import head_options
from protobench.running.grid import cell_spec, expand
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite

ROOT = Path(__file__).resolve().parents[2]
TUNED = "fashion-mnist-tuned"


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of a rich table printed off a terminal, by first cell (continuation lines left out)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split("[│┃]", line.strip())[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_show_prints_each_methods_tuned_lr_as_the_suite_file_gives_it(run_cli) -> None:
    tuned = yaml.safe_load((ROOT / "suites" / f"{TUNED}.yaml").read_text())["method_recipes"]
    code, out, err = run_cli("suites", "show", TUNED)
    assert code == 0, err
    rows = table_rows(out)
    header = rows["method"]
    for method, recipe in tuned.items():
        assert rows[method][header.index("lr")] == f"{recipe['lr']:g}", method
        assert rows[method][header.index("epochs")] == "5" and rows[method][header.index("loss")] == "balanced"
    assert "cells: 8 methods x 6 dims x 3 seeds = 144" in out and "n/a: 9 " in out and "to train: 135" in out
    code, out, _ = run_cli("suites", "show", TUNED, "--json", "--dims", "16", "--epochs", "2")
    (shown,) = json.loads(out)
    assert code == 0 and {m: r["lr"] for m, r in shown["recipes"].items()} == {m: r["lr"] for m, r in tuned.items()}
    assert {r["epochs"] for r in shown["recipes"].values()} == {2}  # the grid flags apply, as run's do
    assert shown["recipes"]["dl2pa"]["options"]["prototype_kind"] == "uniform"  # defaults included


def test_suites_json_gives_every_rows_recipe_as_every_cell_trains_it(run_cli) -> None:
    """The recipe of a row is that of each of its cells' specs: the same in every cell, whatever the dim,
    seed or ratio, and its options are those the head is built with."""
    code, out, _ = run_cli("suites", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows[TUNED]["recipes"]["hpn"]["lr"] == 0.0003
    etf = rows["cifar100"]["recipes"]["etf"]
    assert etf["lr"] == 0.1 and etf["weight_decay"] == 2e-4 and etf["schedule"] == "step"
    for name, row in rows.items():
        suite = load_suite(name)
        assert list(row["recipes"]) == list(suite.methods), name
        for cell in expand(suite):
            spec = cell_spec(suite, cell, deterministic=False, precision=suite.recipe_for(cell.method).precision)
            assert recipe_data(spec) == row["recipes"][cell.method], (name, cell)
    built = create_method("dnc", 10, 4, **load_suite(TUNED).options_for("dnc"))
    assert built.hyperparameters() == head_options("dnc", {}) == rows[TUNED]["recipes"]["dnc"]["options"]
    code, out, _ = run_cli("suites")  # the plain listing is unchanged
    assert code == 0 and "quickstart" in out and "recipes" not in out


def test_run_dry_run_trains_nothing_and_writes_nothing(run_cli, tmp_path, fmnist_dir, monkeypatch) -> None:
    import protobench.running.runner

    suite = tiny_suite(tmp_path / "dry.yaml", methods=["softmax", "etf"], dims=[2, 9], train={"epochs": 1})
    common = ["--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu"]
    code, out, err = run_cli("run", suite, *common, "--dry-run")
    assert code == 0, err
    assert "cells: 2 methods x 2 dims x 1 seed = 4" in out and "finished in " in out and ": 0" in out
    assert "n/a: 1 (" in out and "to train: 3\n" in out and "dry run: nothing trained" in out
    assert not (tmp_path / "res").exists()

    assert run_cli("run", suite, *common, "--dims", "9")[0] == 0  # train two cells, then look again
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "res").rglob("*")}

    def no_training(*args, **kwargs):
        raise AssertionError("a dry run trained")

    monkeypatch.setattr(protobench.running.runner, "run_suite", no_training)
    code, out, err = run_cli("run", suite, *common, "--dry-run")
    assert code == 0, err
    assert f"finished in {tmp_path / 'res'}: 2\n" in out and "to train: 1\n" in out
    code, out, err = run_cli("suites", "show", suite, "--results", tmp_path / "res", "--device", "cpu", "--json")
    assert code == 0 and json.loads(out)[0] | {"recipes": None} == {
        "name": "dry", "path": str(suite), "cells": 4, "cells_here": 4, "not_applicable": 1, "finished": 2,
        "stale": 0, "to_train": 1, "recipes": None}  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "res").rglob("*")} == files


def test_docs_recipes_table_is_what_the_code_gives_now(run_cli, monkeypatch) -> None:
    """docs/recipes.md holds `protobench suites show --all --md` of the shipped suites: regenerate it (the
    command beside the table) whenever a suite or a default changes."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("PROTOBENCH_SUITES", raising=False)
    code, out, err = run_cli("suites", "show", "--all", "--md")
    assert code == 0, err
    text = (ROOT / "docs" / "recipes.md").read_text()
    found = re.search(r"<!-- generated by: protobench suites show --all --md -->\n(.*?)<!-- end of generated table -->",
                      text, re.DOTALL)  # fmt: skip
    assert found is not None, "docs/recipes.md lost its generated table's markers"
    assert found.group(1) == out, "docs/recipes.md's table is out of date: paste `protobench suites show --all --md`"
    shipped = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))
    assert sorted({line.split(" | ")[0].lstrip("| ") for line in out.splitlines()[2:]}) == shipped
