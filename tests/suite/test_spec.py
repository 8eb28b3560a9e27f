"""The resolved cell (protobench/suite/spec.py): every field is in the key, and the key of a committed record holds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from protobench.running.grid import spec_for
from protobench.suite.definition import load_suite
from protobench.suite.recipe import TrainRecipe
from protobench.suite.spec import CellSpec

BASE = spec_for(load_suite("quickstart"), "dl2pa", 3, 0)

#: A changed value for every field of the spec (``data_source`` names a file: not part of the numbers).
CHANGES = {
    "dataset": "cifar10",
    "dataset_options": {"root": "x"},
    "val_size": 1,
    "data_seed": 1,
    "imbalance_ratio": 10.0,
    "imbalance_profile": "step",
    "loss": "long-tailed",
    "backbone": "resnet32",
    "backbone_options": {"width": 8},
    "method": "dl2pa-static",
    "method_options": {**BASE.method_options, "t": 5.0},
    "dim": 4,
    "seed": 1,
    "train": dataclasses.replace(BASE.train, lr=0.5),
    "precision": "bf16",
    "deterministic": True,
    "sync_batchnorm": True,
}


def test_every_field_but_the_source_is_named_here() -> None:
    assert set(CHANGES) | {"data_source"} == {f.name for f in dataclasses.fields(CellSpec)}
    assert dataclasses.replace(BASE, data_source="elsewhere.yaml").digest() == BASE.digest()  # errors only


@pytest.mark.parametrize("field", CHANGES)
def test_changing_any_field_changes_the_hash(field) -> None:
    changed = dataclasses.replace(BASE, **{field: CHANGES[field]})
    if field == "imbalance_profile":  # the profile counts only where a ratio subsamples
        base, changed = (dataclasses.replace(s, imbalance_ratio=10.0) for s in (BASE, changed))
        assert base.digest() != changed.digest()
    else:
        assert changed.digest() != BASE.digest()


def test_every_recipe_key_is_in_the_hash() -> None:
    def other(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, int | float):
            return value + 1
        return {str: f"{value}x", tuple: (1,), dict: {"x": 1}}.get(type(value), 3)  # None: random_resized_crop

    for field in dataclasses.fields(TrainRecipe):
        other_value = other(getattr(BASE.train, field.name))
        changed = dataclasses.replace(BASE, train=dataclasses.replace(BASE.train, **{field.name: other_value}))
        assert changed.digest() != BASE.digest(), field.name


def test_a_committed_record_gives_back_its_spec_and_hash() -> None:
    path = next((Path(__file__).resolve().parents[2] / "results/fashion-mnist-tuned/dl2pa").glob("d2_s0_*.json"))
    record = json.loads(path.read_text())
    spec = CellSpec.from_config(record["config"])
    assert spec.digest() == record["config_hash"] and path.stem.endswith(spec.digest()[:10])
    assert json.loads(json.dumps(spec.config())) == record["config"]


def with_change(field: str) -> CellSpec:
    """BASE with ``field`` set away from its value (the profile with a ratio, where it counts)."""
    changed = dataclasses.replace(BASE, **{field: CHANGES[field]})
    return dataclasses.replace(changed, imbalance_ratio=10.0) if field == "imbalance_profile" else changed


def recipe_changes() -> dict[str, object]:
    """A value away from the quickstart recipe's for every recipe key."""
    others = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2 + 0.25, str: lambda v: f"{v}x",
              tuple: lambda v: (3, 7), dict: lambda v: {"extra": 1}}  # fmt: skip
    return {f.name: others.get(type(getattr(BASE.train, f.name)), lambda v: 3)(getattr(BASE.train, f.name))
            for f in dataclasses.fields(TrainRecipe)}  # fmt: skip


@pytest.mark.parametrize("field", [*CHANGES, *(f"train.{name}" for name in recipe_changes())])
def test_a_spec_comes_back_from_its_config_with_every_field_changed(field) -> None:
    """``from_config(config())`` is the identity, for each field away from its default and through JSON (how
    records hold it): a key it drops or defaults would give a stale check or a reused record another cell."""
    if field.startswith("train."):
        key = field.removeprefix("train.")
        spec = dataclasses.replace(BASE, train=dataclasses.replace(BASE.train, **{key: recipe_changes()[key]}))
    else:
        spec = with_change(field)
    for config in (spec.config(), json.loads(json.dumps(spec.config()))):
        back = CellSpec.from_config(config)
        assert back == spec and back.digest() == spec.digest() and back.config() == spec.config(), field
