"""Which code made a record (protobench/store/code_identity.py, docs/engine.md "Code identity"): one digest for a
working tree and for its commit, ``-dirty`` for an untracked file, and ``results check``'s unknown-code and
mislabelled records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from protobench.store import audit
from protobench.store import records as results
from protobench.store.code_identity import CommitIndex, code_digest, commit_digest, running_digest, tree_files
from tests.conftest import minimal_record


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A tiny committed checkout: a protobench package with a subpackage, a suite, and ignored byte code."""
    root = tmp_path / "repo"
    for path, text in {"protobench/__init__.py": "", "protobench/methods/a.py": "A = 1\n",
                       "suites/s.yaml": "name: s\n", "README.md": "not code\n", ".gitignore": "__pycache__/\n",
                       "protobench/__pycache__/a.cpython.py": "ignored"}.items():  # fmt: skip
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return root


def test_a_working_tree_and_its_commit_give_one_digest(repo):
    here = code_digest(tree_files(repo / "protobench", repo / "suites"))
    assert commit_digest("HEAD", repo / "protobench") == here
    assert [p for p, _ in sorted(tree_files(repo / "protobench", repo / "suites"))] == [
        "protobench/__init__.py", "protobench/methods/a.py", "suites/s.yaml"]  # fmt: skip
    (repo / "protobench" / "methods" / "b.py").write_text("B = 2\n")  # an untracked method file is code too
    assert code_digest(tree_files(repo / "protobench", repo / "suites")) != here
    assert commit_digest("0" * 40, repo) is None


def test_an_untracked_file_makes_the_commit_dirty_and_byte_code_does_not(repo):
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "protobench" / "__pycache__" / "b.pyc").write_bytes(b"ignored")
    (repo / "notes.txt").write_text("outside the code")
    assert results.git_commit(repo / "protobench") == commit
    (repo / "protobench" / "methods" / "new_method.py").write_text("X = 1\n")
    assert results.git_commit(repo / "protobench") == f"{commit}-dirty"


def test_results_check_names_records_whose_code_is_no_commit_or_another_one(tmp_path):
    first = subprocess.run(["git", "-C", str(Path(results.__file__).parent), "rev-list", "--max-parents=0", "HEAD"],
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    if not first:
        pytest.skip("needs the protobench checkout's git history")
    folder = tmp_path / "s" / "softmax"
    folder.mkdir(parents=True)
    made = {"here": (running_digest(), "abc"), "nowhere": ("0" * 64, "abc1234"),
            "first": (CommitIndex().digest_of(first[-1]), "abc5678")}  # fmt: skip
    for name, (digest, commit) in made.items():
        (folder / f"{name}.json").write_text(json.dumps(minimal_record(code_digest=digest, git_commit=commit)))
    (folder / "old.json").write_text(json.dumps(minimal_record(git_commit="abc")))
    notes: list[str] = []
    found = {(f.kind, f.path.stem): f.detail for f in audit.check(tmp_path, notes=notes)}
    assert found == {
        ("unknown-code", "nowhere"): "made by code that matches no commit: digest 000000000000, claims commit abc1234",
        ("mislabelled", "first"): f"made by commit {first[-1][:12]}'s code, claims abc5678",
    }
    assert notes == ["1 record(s) predate code digests: only their git_commit names their code"]


def test_the_running_digest_covers_every_module_of_the_package_and_the_shipped_suites() -> None:
    # The digest's files are found from code_identity's own place in the package: a module moved into
    # another folder must still digest all of protobench/, not its own folder.
    import protobench

    package = Path(protobench.__file__).resolve().parent
    covered = {path for path, _ in tree_files()}
    modules = {f"protobench/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")
               if "__pycache__" not in p.parts}  # fmt: skip
    assert {p for p in covered if p.startswith("protobench/")} == modules
    assert {"protobench/engine/loop.py", "protobench/cli/main.py", "suites/quickstart.yaml"} <= covered
