"""What is wrong in a results store: stale, failed, dirty, unknown-code, mislabelled, mixed-host and
unreadable records (``protobench results check``), and removing the stale ones (``protobench results prune
--stale``); ``--deep``'s prototype check is protobench/store/prototype_audit.py.

- **stale**: made by older numerics than HEAD's for its cell (protobench/store/versions.py); ``run`` trains
  it again, ``report`` and ``compare`` mark a table that holds one;
- **failed**: a cell that raised (``run`` retries it);
- **dirty**: made by uncommitted code (``git_commit`` ends in ``-dirty``);
- **unknown-code**: its ``code_digest`` is the code of no commit of this repository (nor of the working
  tree checking it): nothing ties it to code a reader can get (docs/engine.md, "Code identity");
- **mislabelled**: its ``code_digest`` is another commit's code than the one ``git_commit`` names;
- **mixed-host**: a suite whose records come from several hosts: CPU-trained ones by CPU model,
  instruction-set level and thread count (CPU numbers reproduce on the same of all three only), CUDA
  ones by GPU, driver and cuDNN (protobench/store/host.py; older records by their ``cpu`` or device);
- **unreadable**: not JSON, cut short, or failing the record schema (protobench/store/records.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from protobench.store import records as results
from protobench.store.host import host_key
from protobench.store.versions import stale_parts

#: ``prototypes`` comes from ``results check --deep`` only (protobench/store/prototype_audit.py).
KINDS = ("stale", "failed", "dirty", "unknown-code", "mislabelled", "mixed-host", "unreadable", "prototypes")


@dataclass(frozen=True)
class Finding:
    """One record that needs a look: its ``kind`` (one of ``KINDS``), where it is and why."""

    kind: str
    path: Path
    detail: str


def stale_age(parts: list[str]) -> str:
    """ "newer" when a part of ``stale_parts`` (``"part MADE -> HEAD"``) was made by a later version than HEAD's
    (a branch ahead of HEAD, or a record from before a revert), else "older"."""
    versions = [part.rsplit(" ", 3)[-3:] for part in parts]
    newer = any(len(v) == 3 and v[1] == "->" and v[0].isdigit() and v[2].isdigit() and int(v[0]) > int(v[2])
                for v in versions)  # fmt: skip
    return "newer" if newer else "older"


def check(root: Path, suites: list[str] | None = None, notes: list[str] | None = None) -> list[Finding]:
    """Every finding of the store under ``root`` (or of ``suites``), in path order within each kind;
    ``notes`` (when given) hears what holds for many records at once (those from before code digests)."""
    findings: list[Finding] = []
    hosts: dict[str, dict[Path, str]] = defaultdict(dict)
    coded: dict[Path, tuple[str, str]] = {}
    undigested = 0
    for path in results.record_files(Path(root), suites):
        try:
            record = results.load_record(path)
        except results.UnreadableRecord as why:
            findings.append(Finding("unreadable", path, str(why)))
            continue
        if parts := stale_parts(record):
            findings.append(Finding("stale", path, f"made by {stale_age(parts)} code: " + ", ".join(parts)))
        if record["status"] == "error":
            findings.append(Finding("failed", path, str(record.get("reason", "?"))))
        if str(record.get("git_commit") or "").endswith("-dirty"):
            findings.append(Finding("dirty", path, f"made by uncommitted code at {record['git_commit']}"))
        if isinstance(record.get("code_digest"), str):
            coded[path] = (record["code_digest"], str(record.get("git_commit") or "no commit"))
        else:
            undigested += 1
        if record["status"] == "ok":
            hosts[record["suite"]][path] = host_key(record)
    findings += code_findings(coded, Path(root))
    if notes is not None and undigested:
        notes.append(f"{undigested} record(s) predate code digests: only their git_commit names their code")
    for suite, by_path in hosts.items():
        counts = Counter(by_path.values())
        if len(counts) > 1:
            usual = counts.most_common(1)[0][0]
            summary = "; ".join(f"{name} ({n})" for name, n in counts.most_common())
            findings += [Finding("mixed-host", path, f"{name}; suite {suite} holds {summary}")
                         for path, name in by_path.items() if name != usual]  # fmt: skip
    return sorted(findings, key=lambda f: (KINDS.index(f.kind), str(f.path)))


def code_findings(coded: dict[Path, tuple[str, str]], root: Path) -> list[Finding]:
    """unknown-code and mislabelled records among ``coded`` (path -> (code digest, claimed commit)). A digest
    is the code of the working tree running this check, of the commit a record claims, or, looked for in
    the repository's history only when neither, of some other commit (docs/engine.md, "Code identity")."""
    from protobench.store.code_identity import CommitIndex, running_digest

    index, here = CommitIndex(), running_digest()
    findings = []
    for path, (digest, claimed) in coded.items():
        commit = claimed.removesuffix("-dirty")
        if digest == here or digest == index.digest_of(commit):
            continue
        found = index.find(digest)
        if found is None:
            detail = f"made by code that matches no commit: digest {digest[:12]}, claims commit {claimed[:12]}"
            findings.append(Finding("unknown-code", path, detail))
        else:
            findings.append(Finding("mislabelled", path, f"made by commit {found[:12]}'s code, claims {claimed[:12]}"))
    return findings


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
