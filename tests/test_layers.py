"""The package's layering: imports run down the layers, never up (docs/engine.md, "Module map")."""

from __future__ import annotations

import ast
from pathlib import Path

import protobench

PACKAGE = Path(protobench.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _modules(under: str = "") -> dict[str, set[str]]:
    root = PACKAGE / under
    return {str(p.relative_to(PACKAGE)): _imports(p) for p in sorted(root.rglob("*.py"))}


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = {
        name: sorted(i for i in imports if i.startswith("protobench.cli"))
        for name, imports in _modules().items()
        if not name.startswith("cli/") and name != "__main__.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_data_imports_neither_suites_nor_the_training_layers() -> None:
    upward = ("protobench.suites", "protobench.runner", "protobench.engine", "protobench.step", "protobench.methods")
    offenders = {name: sorted(i for i in imports if i.startswith(upward)) for name, imports in _modules("data").items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_methods_know_nothing_about_data_engine_or_runner() -> None:
    upward = ("protobench.data", "protobench.suites", "protobench.runner", "protobench.engine", "protobench.step")
    offenders = {
        name: sorted(i for i in imports if i.startswith(upward)) for name, imports in _modules("methods").items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_modules_stay_readable_and_cite_only_the_repository() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 400, f"{path.relative_to(PACKAGE)} has {len(text.splitlines())} lines"
        assert "method.md" not in text and "speed.md" not in text, f"{path.relative_to(PACKAGE)} cites outside docs"
