"""What is wrong in a results store: stale, failed, dirty, mixed-host and unreadable records
(``protobench results check``), and removing the stale ones (``protobench results prune --stale``).

- **stale**: made by older numerics than HEAD's for its cell (protobench/numerics.py); ``run`` trains
  it again, ``report`` and ``compare`` mark a table that holds one;
- **failed**: a cell that raised (``run`` retries it);
- **dirty**: made by uncommitted code (``git_commit`` ends in ``-dirty``);
- **mixed-host**: a suite whose CPU-trained records come from several CPU models (CPU numbers
  reproduce on the same CPU model and thread count only), or from several devices;
- **unreadable**: not JSON, cut short, or failing the record schema (protobench/results.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protobench import results
from protobench.numerics import stale_parts

KINDS = ("stale", "failed", "dirty", "mixed-host", "unreadable")


@dataclass(frozen=True)
class Finding:
    """One record that needs a look: its ``kind`` (one of ``KINDS``), where it is and why."""

    kind: str
    path: Path
    detail: str


def host(record: dict[str, Any]) -> str:
    """Where a record's numbers were made: the GPU's name, or the CPU model for a CPU-trained one."""
    device = str(record.get("device", "?"))
    return f"cpu: {record.get('cpu', '?')}" if device.startswith("cpu") else device


def check(root: Path, suites: list[str] | None = None) -> list[Finding]:
    """Every finding of the store under ``root`` (or of ``suites``), in path order within each kind."""
    findings: list[Finding] = []
    hosts: dict[str, dict[Path, str]] = defaultdict(dict)
    for path in results.record_files(Path(root), suites):
        try:
            record = results.load_record(path)
        except results.UnreadableRecord as why:
            findings.append(Finding("unreadable", path, str(why)))
            continue
        if parts := stale_parts(record):
            findings.append(Finding("stale", path, "made by older code: " + ", ".join(parts)))
        if record["status"] == "error":
            findings.append(Finding("failed", path, str(record.get("reason", "?"))))
        if str(record.get("git_commit") or "").endswith("-dirty"):
            findings.append(Finding("dirty", path, f"made by uncommitted code at {record['git_commit']}"))
        if record["status"] == "ok":
            hosts[record["suite"]][path] = host(record)
    for suite, by_path in hosts.items():
        counts = Counter(by_path.values())
        if len(counts) > 1:
            usual = counts.most_common(1)[0][0]
            summary = "; ".join(f"{name} ({n})" for name, n in counts.most_common())
            findings += [Finding("mixed-host", path, f"{name}; suite {suite} holds {summary}")
                         for path, name in by_path.items() if name != usual]  # fmt: skip
    return sorted(findings, key=lambda f: (KINDS.index(f.kind), str(f.path)))


def prune_stale(root: Path, suites: list[str] | None = None) -> list[Path]:
    """Remove every stale record under ``root`` (or of ``suites``) with the files kept beside it (its
    embedding sample, a kept checkpoint); returns the records removed."""
    removed = []
    for finding in check(root, suites):
        if finding.kind != "stale":
            continue
        for companion in (results.embeddings_path(finding.path), finding.path.with_suffix(".pt")):
            companion.unlink(missing_ok=True)
        finding.path.unlink()
        removed.append(finding.path)
    return removed
