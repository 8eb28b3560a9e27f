"""Every quantitative claim the docs make about results holds on the committed records (results/claims.yaml):
each compare row's difference, verdict and detectable difference as printed, recomputed with `compare`
over the same family; and every committed report table re-made from its records, to the character."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from protobench.compare import compare, family_comparison
from protobench.report import build_tables, render
from protobench.results import iter_records
from protobench.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = yaml.safe_load((ROOT / "results" / "claims.yaml").read_text())


@functools.lru_cache(maxsize=None)
def records(results: str) -> tuple[dict, ...]:
    return tuple(iter_records(ROOT / results))


def recomputed(call: dict) -> dict[tuple[str, str, str, str], object]:
    """The rows of a claimed call, by (suite, A, B, column)."""
    found = list(records(call["results"]))
    if call.get("family"):
        rows = family_comparison(found, load_suite(call["suite"]))[0]
    else:
        rows = compare(found, call["suite"], call["a"], call["b"], "final", load_suite(call["suite"]))
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


@functools.lru_cache(maxsize=None)
def recomputed_rows(command: str) -> dict:
    (call,) = [c for c in CLAIMS["calls"] if c["command"] == command]
    return recomputed(call)


@pytest.mark.parametrize("table", CLAIMS["tables"], ids=[t["out"] for t in CLAIMS["tables"]])
def test_a_committed_table_reproduces_from_its_records(table) -> None:
    suites = {name: load_suite(name) for name in table["suites"]}
    metrics = ["test_accuracy" if m == "final" else "test_accuracy_at_best_val" for m in table["metric"].split(",")]
    tables = build_tables(list(records(table["results"])), suites, metrics=metrics)
    assert render(tables, "md") == (ROOT / table["out"]).read_text(), f"{table['out']} does not reproduce"


def test_every_doc_quoting_a_call_has_it_in_the_claims() -> None:
    # A compare command quoted in README.md, results/README.md or docs/ is one whose rows are claimed here.
    docs = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    claimed = {" ".join(call["command"].split()[2:5]) for call in CLAIMS["calls"]}
    for doc in docs:
        for line in doc.read_text().splitlines():
            if "protobench compare " in line and "`" in line:
                quoted = line.split("protobench compare ", 1)[1].split("`")[0].split()
                if len(quoted) >= 3 and quoted[0] in {c["suite"] for c in CLAIMS["calls"]}:
                    assert " ".join(quoted[:3]) in claimed or quoted[1] == "--family", (doc.name, line)
