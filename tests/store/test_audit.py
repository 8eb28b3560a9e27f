"""``results check`` (protobench/store/audit.py) on hand-written stores: what counts as failed, which records of a
mixed-host suite are listed, and a record made by other numerics than HEAD's (docs/engine.md)."""

from __future__ import annotations

from pathlib import Path

from protobench.store import audit
from protobench.store import versions as numerics
from protobench.store.records import cell_path, write_record
from tests.conftest import minimal_record


def put(root: Path, method: str, seed: int, suite: str = "s", **fields) -> Path:
    """A record of ``suite``'s ``method`` at d=2 and ``seed`` (a finished one unless ``fields`` say otherwise)."""
    path = cell_path(root, suite, method, 2, seed, None, f"{method}{seed}".ljust(10, "0"))
    write_record(path, minimal_record(suite=suite, method=method, seed=seed, **fields))
    return path


def paths(root: Path, kind: str) -> list[Path]:
    return [finding.path for finding in audit.check(root) if finding.kind == kind]


def test_only_error_records_count_as_failed_never_n_a_ones(tmp_path, run_cli):
    failed = put(tmp_path, "softmax", 0, status="error", reason="FloatingPointError: nan")
    put(tmp_path, "etf", 0, status="n/a", reason="ETF needs d >= K-1 (K=10, d=2)", metrics={})
    put(tmp_path, "hpn", 0)
    assert paths(tmp_path, "failed") == [failed]
    code, out, _ = run_cli("results", "check", "--results", tmp_path)
    assert ", 1 failed, " in out and f"failed      {failed}: FloatingPointError: nan" in out
    assert "etf" not in out  # an n/a cell is a finished one: nothing to look at


def test_a_mixed_host_suite_lists_only_the_records_of_its_less_common_hosts(tmp_path):
    cpu = {"device": "cpu (4 threads)"}
    usual = [put(tmp_path, "softmax", seed, cpu="Intel Xeon A", **cpu) for seed in range(3)]
    odd = [put(tmp_path, "hpn", 0, cpu="AMD EPYC B", **cpu), put(tmp_path, "hpn", 1, device="NVIDIA H100")]
    for seed in range(2):  # another suite, all on one host (B): not mixed, even though B is odd in suite s
        put(tmp_path, "softmax", seed, suite="t", cpu="AMD EPYC B", **cpu)
    findings = [f for f in audit.check(tmp_path) if f.kind == "mixed-host"]
    assert [f.path for f in findings] == sorted(odd, key=str) and not set(usual) & {f.path for f in findings}
    assert all("suite s holds cpu: Intel Xeon A (3)" in f.detail for f in findings)


def quickstart_hpn() -> tuple[dict, dict[str, int]]:
    """The config of quickstart's hpn d=3 seed 0 cell and HEAD's versions of its parts."""
    from protobench.running.grid import spec_for
    from protobench.suite.definition import load_suite

    spec = spec_for(load_suite("quickstart"), "hpn", 3, 0)
    return spec.config(), numerics.versions_for(spec)


def test_a_record_made_by_a_newer_version_of_a_part_is_stale_and_check_names_that_part(tmp_path):
    config, head = quickstart_hpn()
    version = head["method/hpn"]
    newer = {**head, "method/hpn": version + 1}  # made by a branch ahead of HEAD, or before a revert
    record = {"status": "ok", "config": config, "numerics": newer}
    assert numerics.stale_parts(record) == [f"method/hpn {version + 1} -> {version}"]
    path = put(tmp_path, "hpn", 0, config=config, numerics=newer)
    (stale,) = [f for f in audit.check(tmp_path) if f.kind == "stale"]
    assert stale.path == path and stale.detail == f"made by newer code: method/hpn {version + 1} -> {version}"


def test_a_part_missing_from_a_records_numerics_is_its_first_version(monkeypatch):
    from protobench.methods import METHODS

    config, head = quickstart_hpn()
    lacking = {part: version for part, version in head.items() if part != "method/hpn"}  # from before hpn had one
    record = {"status": "ok", "config": config, "numerics": lacking}
    monkeypatch.setattr(METHODS.get("hpn"), "numerics_version", numerics.FIRST_VERSION)
    assert numerics.stale_parts(record) == []
    monkeypatch.setattr(METHODS.get("hpn"), "numerics_version", numerics.FIRST_VERSION + 1)
    assert numerics.stale_parts(record) == [f"method/hpn {numerics.FIRST_VERSION} -> {numerics.FIRST_VERSION + 1}"]
