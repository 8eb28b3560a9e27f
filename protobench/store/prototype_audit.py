"""``results check --deep``: does each record's prototype set equal the one HEAD makes for its cell?

For every finished record of a head with fixed prototypes, HEAD's set is built again from the record's
config alone (the request training makes, ``methods.prototype_request``, on the CPU, never from the
cache: a cached file may be older code's), once per distinct set, and compared by the strongest
evidence the record has (docs/engine.md, "Prototype digests"):

1. its ``prototype_digest`` (records made since digests): equal or not;
2. else the anchors its embedding sample stores (d <= 3): the class -> prototype rows, which must be
   HEAD's rows in some order (the assignment permutes them), value for value;
3. else the code of the commit it names: that commit's generator, checked out of git into a temporary
   folder and run in a child process on the CPU, makes the set again (a ``-dirty`` commit's set is its
   committed code's, which may not be what ran).

What none of them covers is counted as unverified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from protobench.prototypes.digest import set_digest
from protobench.store import records as results
from protobench.store.audit import Finding
from protobench.store.code_identity import PACKAGE

#: One prototype set: (generator, K, d, seed, its parameters as sorted JSON).
SetKey = tuple[str, int, int, int, str]

#: Run by a child process inside an old commit's code: build each requested set on the CPU, save them all.
OLD_CODE = """
import json, sys
import numpy as np
from protobench.prototypes import generate
keys, out = json.loads(sys.stdin.read()), sys.argv[1]
arrays = {}
for i, (kind, K, d, seed, params) in enumerate(keys):
    try:
        arrays[f"s{i}"] = generate(kind, K, d, seed, use_cache=False, device="cpu", **json.loads(params)).numpy()
    except Exception as error:
        print(f"set {i}: {type(error).__name__}: {error}", file=sys.stderr)
np.savez(out, **arrays)
"""


@dataclass
class DeepCheck:
    """What ``--deep`` found: records whose set differs from HEAD's, and how many were checked each way."""

    findings: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    sets: int = 0

    def notes(self) -> list[str]:
        """One line on how the records were checked."""
        c = self.counts
        return [f"prototypes: {self.sets} distinct set(s) rebuilt at HEAD; of the records with fixed prototypes, "
                f"{c['digest']} compared by prototype_digest, {c['sample']} by their embedding sample's anchors, "
                f"{c['commit']} by rebuilding the set at their commit, {c['unverified']} unverified "
                f"(no digest recorded, no sample, commit not at hand); {len(self.findings)} differ"]  # fmt: skip


def set_key(record: dict[str, Any]) -> SetKey | None:
    """The prototype set a finished record's cell trained with, or None (no fixed prototypes, no whole config)."""
    from protobench.methods import prototype_request
    from protobench.suite.spec import CellSpec

    if record.get("status") != "ok":
        return None
    try:
        spec = CellSpec.from_config(record["config"])
        request = prototype_request(spec.method, spec.method_options)
    except (KeyError, TypeError, ValueError):
        return None
    if request is None:
        return None
    counts = (record.get("data") or {}).get("counts") or {}
    K = len(counts.get("train") or record.get("per_class_accuracy") or [])
    if not K:
        return None
    return request[0], K, spec.dim, spec.seed, json.dumps(request[1], sort_keys=True)


def head_set(key: SetKey) -> np.ndarray:
    """HEAD's set for ``key``, built on the CPU without the cache (float32, K x d)."""
    from protobench.prototypes import generate

    kind, K, d, seed, params = key
    return generate(kind, K, d, seed, use_cache=False, device="cpu", **json.loads(params)).numpy()


def same_rows(anchors: np.ndarray, prototypes: np.ndarray) -> bool:
    """Whether ``anchors`` are exactly the rows of ``prototypes`` in some order (float32 values)."""
    a, p = np.asarray(anchors, np.float32), np.asarray(prototypes, np.float32)
    if a.shape != p.shape:
        return False
    return bool(np.array_equal(a[np.lexsort(a.T[::-1])], p[np.lexsort(p.T[::-1])]))


def sample_anchors(path: Path, record: dict[str, Any]) -> np.ndarray | None:
    """The anchors the record's embedding sample stores, or None when it has none (or it cannot be read)."""
    sample = results.embeddings_path(path)
    if not record.get("embeddings") or not sample.is_file():
        return None
    try:
        with np.load(sample, allow_pickle=False) as data:
            return data.get("anchors")
    except (OSError, ValueError):
        return None


def sets_at_commit(commit: str, keys: list[SetKey], checkout: Path = PACKAGE) -> dict[SetKey, np.ndarray]:
    """The sets ``keys`` as the code of ``commit`` builds them (on the CPU, no cache), by a child process
    that imports that commit's protobench; the sets it could not build are left out."""
    try:  # from the top of the repository: git archive refuses to run in a folder it does not track
        top = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=60).stdout.strip()  # fmt: skip
        command = ["git", "-C", top, "archive", "--format=tar", "--prefix=protobench/", f"{commit}:protobench"]
        archive = subprocess.run(command, capture_output=True, timeout=60) if top else None
    except (OSError, subprocess.SubprocessError):
        return {}
    if archive is None or archive.returncode != 0:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            # Our own repository's archive; the "data" filter where Python has it (3.10.12+).
            tar.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        out = Path(folder) / "sets.npz"
        env = {**os.environ, "PYTHONPATH": folder, "PROTOBENCH_CACHE": str(Path(folder) / "cache"),
               "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
        try:
            done = subprocess.run([sys.executable, "-c", OLD_CODE, str(out)], input=json.dumps(keys), text=True,
                                  capture_output=True, cwd=folder, env=env, timeout=3600)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return {}
        if done.returncode != 0 or not out.is_file():
            return {}
        with np.load(out) as data:
            return {key: data[f"s{i}"] for i, key in enumerate(keys) if f"s{i}" in data}


def deep_check(
    root: Path, suites: list[str] | None = None, on_progress: Callable[[str], None] | None = None
) -> DeepCheck:
    """Compare every finished record's prototype set under ``root`` (or of ``suites``) with HEAD's."""
    from protobench.store.code_identity import CommitIndex

    report, head, digests = DeepCheck(), {}, {}
    by_commit: dict[str, list[tuple[Path, SetKey]]] = {}
    index = CommitIndex()
    for path in results.record_files(Path(root), suites):
        record = results.read_record(path)
        key = set_key(record) if record is not None else None
        if record is None or key is None:
            continue
        if key not in head:
            head[key] = head_set(key)
            digests[key] = set_digest(head[key])
        what = f"{key[0]} K={key[1]} d={key[2]} seed {key[3]}"
        if isinstance(recorded := record.get("prototype_digest"), str):
            report.counts["digest"] += 1
            if recorded != digests[key]:
                report.findings.append(Finding("prototypes", path, f"prototypes differ from HEAD's ({what}): "
                                               f"recorded {recorded[:12]}, HEAD {digests[key][:12]}"))  # fmt: skip
        elif (anchors := sample_anchors(path, record)) is not None:
            report.counts["sample"] += 1
            if not same_rows(anchors, head[key]):
                report.findings.append(Finding("prototypes", path, f"prototypes differ from HEAD's ({what}): "
                                               "the embedding sample's anchors are not HEAD's set"))  # fmt: skip
        elif (commit := str(record.get("git_commit") or "").removesuffix("-dirty")) and index.digest_of(commit):
            by_commit.setdefault(commit, []).append((path, key))
        else:
            report.counts["unverified"] += 1
    report.sets = len(head)
    for commit, cells in sorted(by_commit.items()):
        keys = sorted({key for _, key in cells})
        if on_progress is not None:
            on_progress(f"rebuilding {len(keys)} set(s) at commit {commit[:12]} ({len(cells)} record(s))")
        old = sets_at_commit(commit, keys)
        for path, key in cells:
            if key not in old:
                report.counts["unverified"] += 1
                continue
            report.counts["commit"] += 1
            if set_digest(old[key]) != digests[key]:
                what = f"{key[0]} K={key[1]} d={key[2]} seed {key[3]}"
                report.findings.append(Finding("prototypes", path, f"prototypes differ from HEAD's ({what}): "
                                               f"commit {commit[:12]} makes another set"))  # fmt: skip
    report.findings.sort(key=lambda f: str(f.path))
    return report
