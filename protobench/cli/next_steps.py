"""What to try after the quickstart: the commands its run prints last, as plain text whether or not the
output is a terminal (docs/report.md)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

#: The suite whose run ends with the next steps.
QUICKSTART = "quickstart"
#: Seeds of the suggested rerun: ``compare`` gives a 95% interval from 3 seeds per method on (docs/compare.md).
MORE_SEEDS = ("0", "1", "2")
#: The suggested comparison, A against B: the first pair of which both methods ran.
PAIRS = (("dl2pa", "softmax"), ("dl2pa", "hpn"), ("hpn", "softmax"))
#: The store ``report`` and ``compare`` read when given no --results.
DEFAULT_RESULTS = Path("results")


def without_seeds(args: Sequence[str]) -> list[str]:
    """A run's arguments without its --seeds and --restart flags."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--seeds":
            skip = True
        elif not (arg.startswith("--seeds=") or arg == "--restart"):
            kept.append(arg)
    return kept


def next_steps(suite: str, methods: Sequence[str], seeds: int, results: Path, run_args: Sequence[str]) -> str:
    """Two or three commands to try after a run of ``suite`` into ``results``, each under a comment line: its
    tables and every plot as one HTML page; the run again (``run_args``: its own arguments) with 3 seeds when
    it had fewer (``seeds``); ``compare`` of two of its ``methods`` where a pair of ``PAIRS`` ran."""
    store = [] if Path(results) == DEFAULT_RESULTS else ["--results", str(results)]
    page, plots = Path(results) / f"{suite}.html", Path(results) / "plots" / suite
    steps = [
        (
            f"the tables and every plot on one page: open {page} in a browser",
            ["report", suite, *store, "--format", "html", "--plots", str(plots), "--out", str(page)],
        )
    ]
    if seeds < len(MORE_SEEDS):
        rerun = [*without_seeds(run_args), "--seeds", ",".join(MORE_SEEDS)]
        steps.append(("more seeds (finished cells are skipped): compare's 95% intervals need 3 per method", rerun))
    if pair := next(((a, b) for a, b in PAIRS if a in methods and b in methods), None):
        about = f"{pair[0]} against {pair[1]} at each d: difference, 95% CI, verdict"
        steps.append((about, ["compare", suite, *pair, *store]))
    lines = ["Next, try:"]
    for about, args in steps:
        lines += [f"  # {about}", "  " + shlex.join(["protobench", *args])]
    return "\n".join(lines)
