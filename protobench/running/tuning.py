"""Choose each method's recipe on validation: a grid of lr (x weight decay) values, short runs, one rule.

Every grid point is an ordinary suite (``<suite>-tune``, the point's values in ``method_recipes``),
so its cells land in the results store like any other and a rerun skips what is done. The rule
(docs/recipes.md, "Tuning on validation"): per method, the grid point with the highest mean
*final-epoch validation* accuracy over every tuned (dim, seed) cell; ties go to the first point
in grid order; a point with a failed or missing cell is not eligible; n/a cells (e.g. ETF below
d = K-1) count for no point. Test accuracy is never read.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protobench.core.errors import UserError
from protobench.running.grid import planned_cells
from protobench.running.runner import RunOptions, RunSummary, run_suite
from protobench.store import records as results
from protobench.suite.definition import Suite, validate

#: The metric tuning selects on: never a test accuracy.
SELECTION_METRIC = "val_accuracy"
RULE = (
    "per method, the grid point with the highest mean final-epoch validation accuracy over the tuned "
    "dims and seeds (ties: the first in grid order; a point with a failed cell is not eligible); "
    "test accuracy is never read"
)


@dataclass(frozen=True)
class GridPoint:
    """One recipe change tried for every tuned method: an lr, a weight decay, or both."""

    lr: float | None = None
    weight_decay: float | None = None

    def changes(self) -> dict[str, float]:
        """The method_recipes keys this point sets."""
        values = {"lr": self.lr, "weight_decay": self.weight_decay}
        return {k: v for k, v in values.items() if v is not None}

    def label(self) -> str:
        """``lr=0.01``, ``wd=0.0001`` or ``lr=0.01 wd=0.0001``."""
        short = {"lr": "lr", "weight_decay": "wd"}
        return " ".join(f"{short[k]}={v:g}" for k, v in self.changes().items())


def grid_points(lrs: list[float] | None, weight_decays: list[float] | None) -> list[GridPoint]:
    """The grid in order: lr outer, weight decay inner; a UserError when it is empty or not positive."""
    if not lrs and not weight_decays:
        raise UserError("give a grid to tune: --lr 0.003,0.01,0.03,0.1 and/or --weight-decay 1e-4,5e-4")
    # A NaN fails every comparison, so `v <= 0` alone would let `--lr nan` through: check finiteness first.
    if bad := [v for v in lrs or [] if not (math.isfinite(v) and v > 0)]:
        raise UserError(f"--lr values must be > 0 and finite, got {bad[0]:g}; e.g. --lr 0.003,0.01,0.03,0.1")
    if bad := [v for v in weight_decays or [] if not (math.isfinite(v) and v >= 0)]:
        raise UserError(
            f"--weight-decay values must be >= 0 and finite, got {bad[0]:g}; e.g. --weight-decay 0,1e-4,5e-4"
        )
    for flag, values in (("--lr", lrs), ("--weight-decay", weight_decays)):
        if values and len(set(values)) != len(values):
            raise UserError(f"{flag} lists a value twice; give each grid value once")
    return [GridPoint(lr, wd) for lr in (lrs or [None]) for wd in (weight_decays or [None])]


@dataclass
class Trial:
    """One method at one grid point: the validation accuracy of each of its finished cells."""

    point: GridPoint
    values: list[float] = field(default_factory=list)
    failed: int = 0
    missing: int = 0
    not_applicable: int = 0

    @property
    def eligible(self) -> bool:
        return bool(self.values) and not self.failed and not self.missing

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)


@dataclass
class TuneResult:
    """What a tuning run found: per method, its trials in grid order and the chosen point (or None)."""

    suite: Suite
    tuning_suite: str
    grid: list[GridPoint]
    trials: dict[str, list[Trial]]
    chosen: dict[str, GridPoint | None]
    summary: RunSummary

    def at_grid_edge(self) -> dict[str, str]:
        """Methods whose chosen value is the smallest or largest lr (or weight decay) of a grid with
        several: their best may lie beyond the grid. Maps method -> e.g. ``lr=0.003 (the smallest)``."""
        edges = {}
        for method, point in self.chosen.items():
            if point is None:
                continue
            for key, value in point.changes().items():
                values = sorted({p.changes()[key] for p in self.grid})
                if len(values) > 1 and value in (values[0], values[-1]):
                    side = "smallest" if value == values[0] else "largest"
                    edges[method] = f"{GridPoint(**{key: value}).label()} (the {side})"
        return edges

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for ``--json``."""

        def trial(t: Trial) -> dict[str, Any]:
            return {
                **t.point.changes(), "val_mean": t.mean, "val_std": t.std, "n": len(t.values),
                "failed": t.failed, "missing": t.missing, "not_applicable": t.not_applicable, "eligible": t.eligible,
            }  # fmt: skip

        return {
            "suite": self.suite.name,
            "tuning_suite": self.tuning_suite,
            "dims": list(self.suite.dims),
            "seeds": list(self.suite.seeds),
            "epochs": self.suite.train.epochs,
            "grid": [p.changes() for p in self.grid],
            "rule": RULE,
            "methods": {
                m: {"trials": [trial(t) for t in ts], "chosen": c.changes() if (c := self.chosen[m]) else None}
                for m, ts in self.trials.items()
            },
            "at_grid_edge": self.at_grid_edge(),
        }


def check_tunable(suite: Suite) -> None:
    """Refuse a suite without a validation split: tuning on test would select on the test set."""
    if not suite.has_validation:
        raise UserError(
            f"suite {suite.name} has no validation split (val_size: 0) and tune selects on validation only; "
            "set val_size (e.g. 5000) in the suite, or include it from a file that does"
        )


def trial_suite(suite: Suite, point: GridPoint) -> Suite:
    """``suite`` renamed ``<name>-tune`` with ``point`` over every tuned method's recipe."""
    recipes = {m: {**suite.method_recipes.get(m, {}), **point.changes()} for m in suite.methods}
    trial = dataclasses.replace(suite, name=f"{suite.name}-tune", method_recipes={**suite.method_recipes, **recipes})
    validate(trial, source=f"tune grid point {point.label()}")
    return trial


def choose(trials: list[Trial]) -> GridPoint | None:
    """The eligible trial with the highest validation mean; the first in grid order wins a tie."""
    best: Trial | None = None
    for t in trials:
        if t.eligible and (best is None or t.mean > best.mean):  # type: ignore[operator]
            best = t
    return best.point if best else None


def collect(trial: Suite, point: GridPoint, results_dir: Path, options: RunOptions) -> dict[str, Trial]:
    """Read the records of ``trial``'s cells (by their config hash) into one Trial per method."""
    found = {m: Trial(point) for m in trial.methods}
    for planned in planned_cells(trial, results_dir, deterministic=options.deterministic, device=options.device):
        record, t = results.read_record(planned.path), found[planned.cell.method]
        if record is None:
            t.missing += 1
        elif record.get("status") == "n/a":
            t.not_applicable += 1
        elif record.get("status") != "ok" or record["metrics"].get(SELECTION_METRIC) is None:
            t.failed += 1
        else:
            t.values.append(float(record["metrics"][SELECTION_METRIC]))
    return found


def tune(
    suite: Suite, grid: list[GridPoint], *, results_dir: Path, options: RunOptions, reporter: Any = None, jobs: int = 1
) -> TuneResult:
    """Train every grid point's cells (skipping finished ones), then choose a point per method."""
    check_tunable(suite)
    trials: dict[str, list[Trial]] = {m: [] for m in suite.methods}
    total = RunSummary()
    name = f"{suite.name}-tune"
    for point in grid:
        trial = trial_suite(suite, point)
        summary = run_suite(trial, results_dir=results_dir, options=options, reporter=reporter, jobs=jobs)
        for key in ("total", "skipped", "trained", "not_applicable", "failed"):
            setattr(total, key, getattr(total, key) + getattr(summary, key))
        for method, found in collect(trial, point, results_dir, options).items():
            trials[method].append(found)
    chosen = {m: choose(ts) for m, ts in trials.items()}
    return TuneResult(suite, name, grid, trials, chosen, total)


def tuned_suite_yaml(result: TuneResult, out: Path, command: str) -> str:
    """The text of a suite that ``include:``s the tuned one and sets the chosen ``method_recipes``."""
    import yaml

    base = result.suite
    include = include_reference(base, out)
    lines = [
        f"# Recipes chosen on validation by: {command}",
        f"# Grid: {', '.join(p.label() for p in result.grid)}; dims {', '.join(map(str, base.dims))}; "
        f"seeds {', '.join(map(str, base.seeds))}; {base.train.epochs} epoch(s) a run.",
        f"# Rule: {RULE}.",
        "# Validation accuracy mean over the tuned cells (%), per method and grid point:",
    ]
    for method, ts in result.trials.items():
        shown = ", ".join(f"{t.point.label()} {t.mean:.2f}" if t.eligible else f"{t.point.label()} -" for t in ts)
        pick = result.chosen[method]
        lines.append(f"#   {method}: {shown} -> {pick.label() if pick else 'none eligible: keeps the suite recipe'}")
    if edges := result.at_grid_edge():
        listed = "; ".join(f"{m} {where}" for m, where in edges.items())
        lines.append(f"# At the grid's edge (the best may lie beyond it; extend the grid to know): {listed}.")
    recipes = {m: p.changes() for m, p in result.chosen.items() if p is not None}
    body = {
        "name": out.stem,
        "description": f"{base.description or base.name}; recipes tuned on validation (protobench tune)",
        "include": include,
    }
    if list(result.trials) != list(included_methods(base)):  # `tune --methods X`: the suite trains X
        body["methods"] = list(result.trials)
    body["method_recipes"] = recipes
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=1000)


def included_methods(suite: Suite) -> tuple[str, ...]:
    """The methods of the suite file ``suite`` was loaded from (before tune's ``--methods``), which a suite
    written by tune inherits unless it names its own."""
    from protobench.suite.definition import load_suite

    return tuple(load_suite(suite.path).methods) if suite.path else tuple(suite.methods)


def include_reference(suite: Suite, out: Path) -> str:
    """How ``out`` names the suite it includes: the file name beside it, else the suite's name when the
    search path finds the same file, else a path relative to ``out``'s folder."""
    import os

    from protobench.suite.files import available_suites

    if not suite.path:
        return suite.name
    source, folder = Path(suite.path).resolve(), out.resolve().parent
    if source.parent == folder:
        return source.name
    known = available_suites().get(suite.name)
    if known is not None and known.resolve() == source:
        return suite.name
    return os.path.relpath(source, folder)
