"""Numerics versions (protobench/store/versions.py) and the fingerprint that keeps them honest (tests/fingerprint.py).

The fingerprint test fails when HEAD's numbers for a tiny cell, a prototype set or a backbone's output
moved without the version of the part that moved them being bumped, and when a version was bumped
without the fingerprint being re-made: `python -m tests.fingerprint` (docs/engine.md).
"""

from __future__ import annotations

import json

import pytest

from protobench.store import versions as numerics
from tests import fingerprint

STORED = json.loads(fingerprint.STORED.read_text())


@pytest.fixture(scope="module")
def head():
    """HEAD's fingerprint, computed once for this module."""
    return fingerprint.make()


def test_the_fingerprint_holds_every_entry_with_heads_versions(head) -> None:
    assert sorted(head) == sorted(STORED), "entries changed: re-make with python -m tests.fingerprint"
    stale = [key for key in head if head[key]["parts"] != STORED[key]["parts"]]
    assert stale == [], f"versions bumped without re-making the fingerprint: {stale}; python -m tests.fingerprint"


@pytest.mark.parametrize("key", sorted(STORED))
def test_heads_numbers_are_the_fingerprints(head, key) -> None:
    assert not fingerprint.moved(STORED[key], head[key]), (
        f"{key}: HEAD's numbers moved. If you meant to change numerics, bump the version of the part you "
        f"changed (one of {', '.join(STORED[key]['parts'])}) and re-make: python -m tests.fingerprint"
    )


def test_remaking_refuses_numbers_that_moved_under_unchanged_versions(head, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fingerprint, "make", lambda: head)
    path = tmp_path / "fingerprint.json"
    assert fingerprint.remake(path) == [] and json.loads(path.read_text()) == json.loads(json.dumps(head))
    moved = json.loads(path.read_text())
    moved["cell/softmax"]["history"][0][0] += 1e-3  # as if HEAD's softmax loss had changed
    path.write_text(json.dumps(moved))
    refused = fingerprint.remake(path)
    assert len(refused) == 1 and refused[0].startswith("cell/softmax: its numbers moved")
    assert json.loads(path.read_text()) == moved  # nothing written
    moved["cell/softmax"]["parts"]["method/softmax"] = 0  # an older version: the bump makes the re-make legal
    path.write_text(json.dumps(moved))
    assert fingerprint.remake(path) == []
    assert json.loads(path.read_text())["cell/softmax"] == json.loads(json.dumps(head["cell/softmax"]))


def test_remaking_keeps_stored_numbers_that_moved_by_rounding_only(head, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fingerprint, "make", lambda: head)
    path = tmp_path / "fingerprint.json"
    rounded = json.loads(json.dumps(head))
    rounded["cell/ebv"]["history"][0][0] *= 1 + 1e-12  # as another CPU's rounding might have stored it
    del rounded["cell/softmax"]  # a new entry: written as made
    path.write_text(json.dumps(rounded))
    assert fingerprint.remake(path) == []
    remade = json.loads(path.read_text())
    assert remade["cell/ebv"] == rounded["cell/ebv"]  # kept as stored
    assert remade["cell/softmax"] == json.loads(json.dumps(head["cell/softmax"]))


def test_the_tolerance_sits_between_rounding_and_a_change() -> None:
    entry = STORED["cell/dl2pa-d3"]
    rounding = json.loads(json.dumps(entry))
    rounding["history"][1][0] *= 1 + 1e-12
    assert not fingerprint.moved(entry, rounding)
    change = json.loads(json.dumps(entry))
    change["history"][1][0] *= 1 + 1e-4
    assert fingerprint.moved(entry, change)


def test_a_record_without_versions_is_the_first_version_and_a_bumped_part_makes_it_stale(monkeypatch) -> None:
    from protobench.methods import METHODS
    from protobench.running.grid import spec_for
    from protobench.suite.definition import load_suite

    spec = spec_for(load_suite("quickstart"), "hpn", 3, 0)
    parts = numerics.versions_for(spec)
    assert set(parts) == {"engine", "data", "backbone/smallcnn", "method/hpn", "prototypes/hpn"}
    unversioned = {"status": "ok", "config": spec.config()}  # made before versions existed: version 1 of each
    assert numerics.is_stale(unversioned) == any(version != 1 for version in parts.values())
    current = {**unversioned, "numerics": parts}
    assert not numerics.is_stale(current)
    bumped = parts["method/hpn"] + 1
    monkeypatch.setattr(METHODS.get("hpn"), "numerics_version", bumped)
    assert numerics.stale_parts(current) == [f"method/hpn {bumped - 1} -> {bumped}"]
    gone = {"status": "ok", "config": {**spec.config(), "method": "gone"}}
    assert numerics.stale_parts(gone) == ["method/gone unknown at HEAD"]
    assert numerics.stale_parts({"status": "ok", "config": {"train": {}}}) == []  # no whole config: nothing to check
