"""The fingerprint tries every path a shipped suite takes (docs/engine.md, "The fingerprint test").

Every cell of every suite in suites/*.yaml is resolved as a run resolves it (``grid.cell_spec``) and
mapped to the path it takes through the engine (``tests.fingerprint.path_of``: method, prototypes, loss,
matching, mixing, augmentation, schedule, optimiser, data, long tail, backbone); so is every fingerprint
cell. A shipped path that no fingerprint cell takes fails the test, which names it and the suite rows
that take it. Nothing trains here: it reads suites and builds specs, in seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests import fingerprint

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))
#: How many of the rows taking a missing path the failure names.
SHOWN = 4


@functools.cache
def shipped_paths() -> dict[tuple[str, str], set[str]]:
    """(dimension, value) -> the ``suite: row`` of every shipped cell that takes it (n/a cells train nothing)."""
    from protobench.running.grid import cell_spec, expand, not_applicable
    from protobench.suite.definition import load_suite

    taken: dict[tuple[str, str], set[str]] = {}
    for path in SUITES:
        suite = load_suite(str(path))
        for cell in expand(suite):
            if not_applicable(suite, cell) is not None:
                continue
            precision = suite.recipe_for(cell.method).precision
            spec = cell_spec(suite, cell, deterministic=False, precision=precision)
            for step in fingerprint.path_of(spec).items():
                taken.setdefault(step, set()).add(f"{suite.name}: {cell.method}")
    return taken


def tried_paths(cells: Mapping[str, Any], folder: Path) -> set[tuple[str, str]]:
    """The (dimension, value) pairs the fingerprint's ``cells`` take; its forward pass per backbone (and per
    ``BACKBONE_VARIANTS`` entry) tries every backbone, whichever backbone the cells train."""
    from protobench.backbones import BACKBONES

    tried: set[tuple[str, str]] = set()
    for name in cells:
        tried |= set(fingerprint.path_of(fingerprint.cell_spec(name, folder)).items())
    tried |= {("backbone", name) for name in BACKBONES.names()}
    tried |= {("backbone", fingerprint.backbone_path(name, options)) for name, options in fingerprint.BACKBONE_VARIANTS}
    return tried


def untried(cells: Mapping[str, Any], folder: Path) -> list[str]:
    """One line per shipped path none of ``cells`` takes, naming the rows that take it."""
    tried = tried_paths(cells, folder)
    lines = []
    for (dimension, value), rows in sorted(shipped_paths().items()):
        if (dimension, value) not in tried:
            shown = ", ".join(sorted(rows)[:SHOWN]) + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")
            lines.append(f"{dimension}: {value!r}, taken by {shown}")
    return lines


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fingerprint-suites")


def test_every_shipped_path_is_tried_by_a_fingerprint_cell(folder) -> None:
    missing = untried(fingerprint.CELLS, folder)
    assert missing == [], (
        "the fingerprint leaves shipped paths untried; add a cell that takes each to CELLS in tests/fingerprint.py "
        "and re-make it (python -m tests.fingerprint):\n  " + "\n  ".join(missing)
    )


def test_a_path_taken_out_of_the_fingerprint_is_named_with_the_rows_that_take_it(folder) -> None:
    cells = {name: cell for name, cell in fingerprint.CELLS.items() if name != "dl2pa-cosce-random-d3"}
    missing = untried(cells, folder)
    assert [line.split(",")[0] for line in missing] == [
        "loss: 'dl2pa with cos-ce'", "optimizer: 'sgd nesterov'", "prototypes: 'dl2pa on random'"
    ]  # fmt: skip
    assert "ablation-loss: dl2pa-cosce" in missing[0] and "ablation-prototypes: dl2pa-random" in missing[2]


def test_the_suites_take_every_dimension_and_the_cells_are_in_the_stored_fingerprint() -> None:
    dimensions = {dimension for dimension, _ in shipped_paths()}
    assert dimensions == {"method", "prototypes", "loss", "matching", "mixing", "mixing x loss family",
                          "augmentation", "schedule", "optimizer", "data", "long tail", "backbone"}  # fmt: skip
    stored = set(fingerprint.json.loads(fingerprint.STORED.read_text()))
    expected = {f"cell/{name}" for name in fingerprint.CELLS}
    expected |= {f"backbone/{fingerprint.backbone_path(n, o)}" for n, o in fingerprint.BACKBONE_VARIANTS}
    assert expected - stored == set(), "cells not in the stored fingerprint: re-make it (python -m tests.fingerprint)"
