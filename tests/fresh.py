"""Run code in a fresh interpreter and see what it imported (tests only): the read-only paths must not
import torch, which the test process itself has long imported."""

from __future__ import annotations

import json
import subprocess
import sys

#: The packages a read-only path must not import.
HEAVY = {"torch", "torchvision", "PIL"}


def run_fresh(code: str) -> tuple[list[str], list[str]]:
    """Run ``code`` with ``python -c``: the lines it printed, and which of HEAVY it imported. Fails on any
    output to stderr (a warning of a module that failed to import included)."""
    report = f"\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    done = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True, check=True)
    assert done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    return lines[:-1], json.loads(lines[-1])
