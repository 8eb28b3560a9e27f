"""Numerics versions: which code made a record's numbers (docs/engine.md, "Numerics versions").

Every part that can move a cell's numbers declares a version: the training step and loop
(``ENGINE_VERSION``, here so that the store imports no engine), the data pipeline
(``data.prepare.NUMERICS_VERSION``), each backbone (``backbones.numerics_version``), each method (its
card's ``numerics_version``) and each prototype generator (``Generator.version``). A cell depends on
some of them: the engine, the data, its backbone, its method and, for a head with fixed prototypes,
their generator. Its record stores those versions (``numerics``); a record whose versions differ from
HEAD's for its cell is **stale**: made by code that no longer exists, never skipped as finished, never
reused, marked in tables.

Records made before versions existed carry none; they are read as version 1 of every part (the
committed records, which HEAD reproduced bit for bit when versions were introduced, are that
first version).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protobench.suite.spec import CellSpec

#: The version a record without ``numerics`` was made with, for every part.
FIRST_VERSION = 1
#: The numerics version of the training step and loop (protobench/engine/loop.py, step.py, evaluation.py and the
#: optimiser set-up): bump it with any change there that moves a cell's numbers (docs/engine.md, "Numerics
#: versions"), and re-make the fingerprint in the same commit.
ENGINE_VERSION = 1


def versions_for(spec: CellSpec) -> dict[str, int]:
    """HEAD's version of every part the cell ``spec`` depends on, as ``{"engine": 1, "method/dl2pa": 1, ...}``.
    A part that is not registered here (a removed method, a test's backbone) raises KeyError."""
    from protobench.backbones import BACKBONES, numerics_version
    from protobench.data.prepare import NUMERICS_VERSION as DATA_VERSION
    from protobench.methods import METHODS, prototype_request
    from protobench.prototypes import get_generator

    if spec.backbone not in BACKBONES:
        raise KeyError(f"backbone/{spec.backbone}")
    if spec.method not in METHODS:
        raise KeyError(f"method/{spec.method}")
    parts = {
        "engine": ENGINE_VERSION,
        "data": DATA_VERSION,
        f"backbone/{spec.backbone}": numerics_version(spec.backbone),
        f"method/{spec.method}": METHODS.get(spec.method).numerics_version,
    }
    request = prototype_request(spec.method, spec.method_options)
    if request is not None:
        parts[f"prototypes/{request[0]}"] = get_generator(request[0]).version
    return parts


def recorded_versions(record: Mapping[str, Any], parts: Mapping[str, int]) -> dict[str, int]:
    """The versions ``record`` was made with, for ``parts`` (a record from before versions: the first)."""
    stored = record.get("numerics")
    if not isinstance(stored, Mapping):
        return dict.fromkeys(parts, FIRST_VERSION)
    return {part: stored.get(part, FIRST_VERSION) for part in parts}


def stale_parts(record: Mapping[str, Any]) -> list[str]:
    """The parts whose version at HEAD differs from the one ``record`` was made with (``part 1 -> 2``);
    empty for a current record, and for one without a whole config (nothing to check it against). A
    record of a method or backbone HEAD no longer has is stale as a whole."""
    try:
        spec = CellSpec.from_config(record["config"])
    except (KeyError, TypeError, ValueError):
        return []
    try:
        head = versions_for(spec)
    except KeyError as missing:
        return [f"{missing.args[0]} unknown at HEAD"]
    made = recorded_versions(record, head)
    return [f"{part} {made[part]} -> {head[part]}" for part in head if made[part] != head[part]]


def is_stale(record: Mapping[str, Any]) -> bool:
    """True when ``record`` was made by other numerics than HEAD's for its cell."""
    return bool(stale_parts(record))
