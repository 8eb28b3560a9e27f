"""Which code made a record: a digest of protobench's own source files (docs/engine.md, "Code identity").

A record names its commit (``results.git_commit``), but a working tree copied without a current ``.git``
names a stale commit (the GPU records of results/gpu read fcdb846 while 1075b7c and d0f8d5d made them).
The digest is taken from the files themselves: every ``*.py`` under the installed ``protobench`` package
and every ``suites/*.yaml`` of the checkout, tracked or not. ``code_digest`` is a pure function of
(relative path, bytes) pairs, so the same function digests the running tree and a commit's tree, and
``results check`` can say which commit (if any) a record's digest belongs to.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # protobench/ (this module is in protobench/store/)
#: The shipped suites beside the package in a checkout (absent from an installed wheel: then not digested).
SUITES = PACKAGE.parent / "suites"


def code_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over ``(relative posix path, bytes)`` pairs, sorted by path; each part is length-prefixed
    so that no two different sets of files give the same stream."""
    digest = hashlib.sha256()
    for path, data in sorted(files):
        name = path.encode()
        for part in (name, data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def counted(path: str) -> bool:
    """Whether a repository-relative path is part of the code a digest covers."""
    parts = path.split("/")
    if "__pycache__" in parts:
        return False
    if parts[0] == "protobench":
        return path.endswith(".py")
    return len(parts) == 2 and parts[0] == "suites" and path.endswith(".yaml")


def tree_files(package: Path = PACKAGE, suites: Path = SUITES) -> list[tuple[str, bytes]]:
    """The files of the running code: ``protobench/**/*.py`` and ``suites/*.yaml`` (where there is one)."""
    files = [(f"protobench/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in package.rglob("*.py")]
    if suites.is_dir():
        files += [(f"suites/{p.name}", p.read_bytes()) for p in suites.glob("*.yaml")]
    return [(path, data) for path, data in files if counted(path)]


@functools.cache
def running_digest() -> str:
    """The digest of the code this process runs, computed once (a run's records share it)."""
    return code_digest(tree_files())


def commit_digest(commit: str, checkout: Path = PACKAGE) -> str | None:
    """The digest of the code at ``commit`` of the git repository holding ``checkout``; None when git or
    the commit is not at hand (a shallow clone, a copy without ``.git``)."""

    def git(*args: str, stdin: bytes | None = None) -> bytes | None:
        try:
            out = subprocess.run(["git", "-C", str(checkout), *args], input=stdin, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    listing = git("ls-tree", "-r", "-z", "--full-tree", commit, "--", "protobench", "suites")
    if listing is None:
        return None
    blobs: list[tuple[str, str]] = []
    for entry in listing.decode().split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob" and counted(path) and mode != "120000":  # a symlink is no file of its own
            blobs.append((path, sha))
    if not blobs:
        return code_digest([])
    # One git process reads every blob: "<sha> blob <size>\n<bytes>\n" each, in the order asked.
    stream = git("cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in blobs).encode())
    if stream is None:
        return None
    files, at = [], 0
    for path, _ in blobs:
        header_end = stream.index(b"\n", at)
        size = int(stream[at:header_end].split()[2])
        files.append((path, stream[header_end + 1 : header_end + 1 + size]))
        at = header_end + 1 + size + 1
    return code_digest(files)


class CommitIndex:
    """The code digests of this repository's commits, each computed once, as asked."""

    def __init__(self, checkout: Path = PACKAGE) -> None:
        self.checkout = checkout
        self.digests: dict[str, str | None] = {}
        self.by_digest: dict[str, list[str]] | None = None

    def digest_of(self, commit: str) -> str | None:
        """The digest of ``commit``'s code; None when it is not in the repository (or there is none)."""
        if commit not in self.digests:
            self.digests[commit] = commit_digest(commit, self.checkout) if commit else None
        return self.digests[commit]

    def find(self, digest: str) -> str | None:
        """The oldest commit (of every branch) whose code has ``digest``, or None; the history is walked once."""
        if self.by_digest is None:
            self.by_digest = {}
            try:
                out = subprocess.run(["git", "-C", str(self.checkout), "rev-list", "--all", "--reverse"],
                                     capture_output=True, text=True, timeout=60)  # fmt: skip
                commits = out.stdout.split() if out.returncode == 0 else []
            except (OSError, subprocess.SubprocessError):
                commits = []
            for commit in commits:
                if (found := self.digest_of(commit)) is not None:
                    self.by_digest.setdefault(found, []).append(commit)
        matches = self.by_digest.get(digest)
        return matches[0] if matches else None
