"""The read-only commands import no torch (docs/engine.md, "Module map"): listing suites and methods,
reporting, comparing and checking the committed store read cards, suites and records only, so they answer
without the two seconds importing torch takes. Each command runs in a fresh interpreter under
``python -X importtime``, which lists every module the process imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

READ_ONLY = [
    ["--help"],
    ["suites"],
    ["methods"],
    ["report", "quickstart"],
    ["compare", "quickstart", "dl2pa", "softmax"],
    ["results", "check"],
]


def imported_modules(importtime: str) -> set[str]:
    """The module names of ``python -X importtime``'s report (``import time: self | cumulative | name``)."""
    names = set()
    for line in importtime.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and not parts[2].strip().startswith("imported"):
            names.add(parts[2].strip())
    return names


def heavy(names: set[str]) -> list[str]:
    """The modules of torch and torchvision among ``names``."""
    return sorted(name for name in names if name.split(".")[0] in {"torch", "torchvision"})


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_imports_no_torch(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "protobench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    names = imported_modules(done.stderr)
    assert "protobench.cli.main" in names  # the report was read
    assert heavy(names) == [], f"protobench {' '.join(args)} imported torch: {heavy(names)[:5]}"


def test_the_check_sees_torch_when_a_command_imports_it() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import protobench.heads"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch" in heavy(imported_modules(done.stderr))
