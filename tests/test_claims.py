"""Every quantitative claim the docs make about results holds on the committed records (results/claims.yaml):
each compare row's difference, verdict and detectable difference as printed, recomputed with `compare`
over the same family; and every committed report table re-made from its records, to the character."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from protobench.api import drop_reused_seeds
from protobench.reporting.comparison import compare, family_comparison
from protobench.reporting.report import build_tables, render
from protobench.store.records import iter_records
from protobench.suite.definition import load_suite

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = yaml.safe_load((ROOT / "results" / "claims.yaml").read_text())


@functools.cache
def records(results: str) -> tuple[dict, ...]:
    return tuple(iter_records(ROOT / results))


def suite_of(name_or_file: str):
    """A shipped suite by name, or a suite file by its path from the repository root (a store's pinned suite)."""
    return load_suite(str(ROOT / name_or_file) if name_or_file.endswith(".yaml") else name_or_file)


def pinned_suite(store: str, name: str):
    """The suite as a store's records of it were made: ``STORE/suites/NAME.yaml`` where the store pins one
    (results/gpu does, for a suite whose recipe moved after its records were made), else the shipped one."""
    pinned = ROOT / store / "suites" / f"{name}.yaml"
    return load_suite(str(pinned)) if pinned.exists() else load_suite(name)


def recomputed(call: dict) -> dict[tuple[str, str, str, str], object]:
    """The rows of a claimed call, by (suite, A, B, column)."""
    found = list(records(call["results"]))
    if call.get("without_reused"):
        found = drop_reused_seeds(found)
    suite = suite_of(call.get("suite_file", call["suite"]))
    assert suite.name == call["suite"], f"{call['command']}: its suite file names {suite.name}"
    if call.get("family"):
        rows = family_comparison(found, suite)[0]
    else:
        rows = compare(found, call["suite"], call["a"], call["b"], "final", suite)
    return {(row.suite, row.a, row.b, row.column): row for row in rows}


def claim_id(call: dict, claim: dict) -> str:
    return f"{call['command']} :: {claim.get('a', call.get('a'))} vs {claim['b']} at {claim['column']}"


CASES = [(call, claim) for call in CLAIMS["calls"] for claim in call["claims"]]


@pytest.mark.parametrize(("call", "claim"), CASES, ids=[claim_id(*case) for case in CASES])
def test_a_claim_holds_on_the_committed_records(call, claim) -> None:
    rows = recomputed_rows(call["command"])
    key = (claim.get("suite", call["suite"]), claim.get("a", call.get("a")), claim["b"], claim["column"])
    assert key in rows, f"claim {claim_id(call, claim)}: the call has no such row now"
    row = rows[key]
    now = {"diff": f"{row.diff:+.2f}", "verdict": row.verdict}
    if "detectable" in claim:
        now["detectable"] = f"{row.detectable:.2f}"
    said = {k: claim[k] for k in now}
    assert now == said, f"claim {claim_id(call, claim)} no longer holds: the docs say {said}, the records give {now}"


@functools.cache
def recomputed_rows(command: str) -> dict:
    (call,) = [c for c in CLAIMS["calls"] if c["command"] == command]
    return recomputed(call)


@pytest.mark.parametrize("table", CLAIMS["tables"], ids=[t["out"] for t in CLAIMS["tables"]])
def test_a_committed_table_reproduces_from_its_records(table) -> None:
    suites = {suite.name: suite for suite in map(suite_of, table["suites"])}
    metrics = ["test_accuracy" if m == "final" else "test_accuracy_at_best_val" for m in table["metric"].split(",")]
    tables = build_tables(list(records(table["results"])), suites, metrics=metrics)
    assert render(tables, "md") == (ROOT / table["out"]).read_text(), f"{table['out']} does not reproduce"


#: How many compare calls README.md, results/README.md and docs/ quote in full on one line (suite, A and B):
#: counted, so that a change of quoting style that the pattern below no longer sees fails here instead of
#: leaving the test with nothing to check. Update it when a document adds or drops such a call.
QUOTED_CALLS = 11


def test_every_doc_quoting_a_call_has_it_in_the_claims() -> None:
    # A compare command quoted in README.md, results/README.md or docs/ is one whose rows are claimed here.
    docs = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    claimed = {" ".join(call["command"].split()[2:5]) for call in CLAIMS["calls"]}
    suites = {c["suite"] for c in CLAIMS["calls"]} | {c["suite_file"] for c in CLAIMS["calls"] if "suite_file" in c}
    found = []
    for doc in docs:
        for line in doc.read_text().splitlines():
            if "protobench compare " in line and "`" in line:
                quoted = line.split("protobench compare ", 1)[1].split("`")[0].split()
                if len(quoted) >= 3 and quoted[0] in suites:
                    found.append(f"{doc.relative_to(ROOT)}: {' '.join(quoted[:3])}")
                    assert " ".join(quoted[:3]) in claimed or quoted[1] == "--family", (doc.name, line)
    assert len(found) == QUOTED_CALLS, f"{len(found)} quoted compare calls, not {QUOTED_CALLS}:\n" + "\n".join(found)


def committed_suites() -> list[tuple[str, str]]:
    """(store, suite) of every suite with committed records."""
    found = []
    for store in ("results", "results/gpu"):
        for folder in sorted((ROOT / store).iterdir()):
            if folder.is_dir() and any(folder.glob("*/*.json")) and folder.name in _shipped():
                found.append((store, folder.name))
    return found


@functools.cache
def _shipped() -> frozenset[str]:
    from protobench.suite.definition import available_suites

    return frozenset(available_suites())


@pytest.mark.parametrize(("store", "name"), committed_suites(), ids=[f"{s}/{n}" for s, n in committed_suites()])
def test_run_at_head_trains_nothing_the_store_holds(store, name) -> None:
    # The cells the records cover (their rows, dims, seeds), planned at HEAD: every one is finished under
    # its hash, made with HEAD's numerics (none stale), so `protobench run` with the flags that made them
    # trains nothing.
    import torch

    from protobench.running.grid import plan_suite

    mine = [r for r in records(store) if r["suite"] == name]
    suite = pinned_suite(store, name).with_overrides(
        methods=sorted({r["method"] for r in mine}), dims=sorted({r["dim"] for r in mine}),
        seeds=sorted({r["seed"] for r in mine}),
    )  # fmt: skip
    device = torch.device("cuda" if store.endswith("gpu") else "cpu")  # the precision each store's cells resolved
    deterministic = bool(mine[0]["config"]["deterministic"])
    plan = plan_suite(suite, ROOT / store, deterministic=deterministic, device=device)
    covered = {(r["method"], r["dim"], r["seed"], r["imbalance_ratio"]) for r in mine}
    missing = [p for p in plan.cells if (p.cell.method, p.cell.dim, p.cell.seed, p.cell.ratio) in covered]
    assert plan.stale == 0 and missing == [], [str(p.path) for p in missing[:5]]
