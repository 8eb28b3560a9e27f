"""Finding and reading suite files: the search path, names -> files, YAML with ``include:`` merged.

Plain data only (``yaml.safe_load``); protobench.suite.definition turns it into a validated ``Suite``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from protobench.core.errors import UserError, did_you_mean


def suites_dirs() -> list[Path]:
    """Where suite names are looked up: $PROTOBENCH_SUITES, ./suites, then the suites/ shipped beside the package."""
    dirs = []
    if env := os.environ.get("PROTOBENCH_SUITES"):
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "suites")
    dirs.append(Path(__file__).resolve().parents[2] / "suites")  # beside protobench/ (this is protobench/suite/)
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def available_suites() -> dict[str, Path]:
    """Every suite name found, mapped to its file (the first dir wins)."""
    found: dict[str, Path] = {}
    for d in suites_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def resolve_suite_path(name_or_path: str) -> Path:
    """A suite name or a YAML path -> the file; an unknown name lists the known ones."""
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not as_path.is_file():
            what = "is not a file" if as_path.exists() else "does not exist"
            raise UserError(
                f"suite file {name_or_path} {what}; check the path, or give a suite name (see protobench suites)"
            )
        return as_path
    known = available_suites()
    if name_or_path not in known:
        raise UserError(
            f"unknown suite '{name_or_path}'{did_you_mean(name_or_path, known)}; known: {', '.join(known) or 'none'} "
            "(or pass a path to a .yaml file)"
        )
    return known[name_or_path]


def read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a suite file and merge the files it ``include:``s under it (cycles are errors)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise UserError(f"{path}: include cycle {cycle}; remove one include")
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read suite file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UserError(f"{path}:{where}: {problem}; fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: the top level is a {type(data).__name__}; a suite file must be a mapping of suite keys "
            "(name:, dataset:, dims:, methods:, ...)"
        )
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise UserError(f"{path}: key 'include' must be a file name or suite name, got {include!r}")
    if include.endswith((".yaml", ".yml")):
        target = path.parent / include
    else:
        try:
            target = resolve_suite_path(include)
        except UserError as error:
            raise UserError(f"{path}: key 'include': {error}") from None
    if not target.is_file():
        raise UserError(
            f"{path}: key 'include': {target} does not exist; name a file beside this one (or a suite name)"
        )
    included = read_yaml(target, (*chain, path))
    # A name is not inherited: an including file is another suite, with records of its own.
    included.pop("name", None)
    return deep_merge(included, data)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge, everything else (and an empty mapping) replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
