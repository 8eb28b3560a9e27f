"""``protobench compare SUITE A B[,B2,...]`` or ``protobench compare SUITE --family``: is A better than B at each
column? Difference, 95% CI, raw and corrected p, the difference the design could detect, and a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from protobench.errors import UserError

if TYPE_CHECKING:
    from protobench.compare import Row

CORRECTION_NAMES = {"none": "uncorrected", "holm": "Holm", "bh": "Benjamini-Hochberg"}


def caption(correction: str, size: int, margin: float | None, family: bool) -> str:
    """The footnote of the table: the tests, the correction applied over the family and the verdict rule."""
    from protobench.compare import ALPHA

    alpha = f"{ALPHA:g}"
    which = "the suite's declared family" if family else "this table"
    adjusted = (
        "p adj = p (t), no correction for multiple comparisons"
        if correction == "none"
        else f"p adj = p (t) {CORRECTION_NAMES[correction]}-adjusted over the {size} test(s) of {which}"
    )
    level = alpha if correction == "none" else f"{alpha}/{size}"
    equivalent = f"; equivalent within +-{margin:g} when the TOST p < {alpha}" if margin is not None else ""
    return (
        "diff = A - B. Paired t on per-seed differences when both ran the same seeds (with the exact sign-flip p "
        f"for n <= 10), else Welch's t; {adjusted}. Verdict: p adj < {alpha} -> A better (diff > 0) or B better, "
        f"else no evidence{equivalent}. detectable: the difference found with 80% power at alpha {level}."
    )


def compare_command(
    suite: Annotated[
        str,
        typer.Argument(
            metavar="SUITE",
            help="The suite whose records are compared (its name in the store; with --family, a suite name or file).",
        ),
    ],
    a: Annotated[str | None, typer.Argument(metavar="A", help="Method A (not with --family).")] = None,
    b: Annotated[
        str | None,
        typer.Argument(metavar="B[,B2,...]", help="Method B, or several comma-separated (A is compared with each)."),
    ] = None,
    family: Annotated[
        bool, typer.Option("--family", help="Test the comparisons declared in the suite file's 'family' key instead.")
    ] = False,
    correction: Annotated[
        str, typer.Option(help="Multiple-comparison correction over the family: none, holm or bh (Benjamini-Hochberg).")
    ] = "holm",
    margin: Annotated[
        float | None,
        typer.Option(help="Equivalence margin in points: also test |A - B| < M (TOST at 0.05).", show_default=False),
    ] = None,
    results: Annotated[Path, typer.Option(help="The results store to read.")] = Path("results"),
    metric: Annotated[
        str, typer.Option(help="final (last-epoch test accuracy) or val-selected (at the best validation epoch).")
    ] = "final",
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows and notes as JSON for scripts.")] = False,
) -> None:
    """Compare method A with each B per column (or a suite's declared family): mean difference, 95% CI, raw and
    corrected p-values, the detectable difference and a verdict (docs/compare.md)."""
    from protobench.cli.flags import check_results_flag, record_warner
    from protobench.compare import check_correction, check_margin, check_request, metric_key

    key = metric_key(metric)
    check_correction(correction)
    check_margin(margin)
    if family and (a is not None or b is not None):
        raise UserError("--family takes A and B from the suite's 'family' key; give only SUITE")
    if not family and (a is None or b is None):
        raise UserError("give methods A and B (protobench compare SUITE A B), or --family for the suite's family")
    check_results_flag(results, must_exist=True)
    answer = {"metric": metric, "metric_key": key, "correction": correction, "margin": margin}
    if family:
        rows, lines, size, name = family_rows(suite, results, metric, correction, margin)
        title = f"{name}: the declared family ({size} tests), {metric} test accuracy (%)"
        answer = {"suite": name, "family": True, **answer}
    else:
        from protobench.compare import comparison
        from protobench.results import iter_records
        from protobench.suites import available_suites, load_suite

        bs = list(dict.fromkeys(m.strip() for m in b.split(",") if m.strip()))
        records = list(iter_records(results, [suite], record_warner()))
        check_request(records, suite, a, bs, str(results))
        known = load_suite(suite) if suite in available_suites() else None
        rows, lines, size = comparison(records, suite, a, bs, metric, known, correction, margin)
        title = f"{suite}: A = {a} vs B = {', '.join(bs)}, {metric} test accuracy (%)"
        answer = {"suite": suite, "a": a, "b": bs, "family": False, **answer}
    if as_json:
        from protobench.compare import ALPHA

        answer = {**answer, "family_size": size, "alpha": ALPHA}
        typer.echo(json.dumps({**answer, "rows": [r.as_dict() for r in rows], "notes": lines}, indent=1))
        return
    print_rows(rows, title, lines, caption(correction, size, margin, family), margin)


def family_rows(
    suite: str, results: Path, metric: str, correction: str, margin: float | None
) -> tuple[list[Row], list[str], int, str]:
    """The rows, notes and family size of the suite's declared family, and the suite's name in the store."""
    from protobench.cli.flags import record_warner
    from protobench.compare import check_family_request, family_comparison
    from protobench.results import iter_records
    from protobench.suites import load_suite

    declared = load_suite(suite)
    records = list(iter_records(results, declared.family_suites, record_warner()))
    check_family_request(records, declared, str(results))
    rows, lines, size = family_comparison(records, declared, metric, correction, margin)
    return rows, lines, size, declared.name


def number(value: float | None, fmt: str) -> str:
    """``value`` formatted, or ``-`` when there is none."""
    return "-" if value is None else format(value, fmt)


def print_rows(rows: list[Row], title: str, lines: list[str], footnote: str, margin: float | None = None) -> None:
    """The comparison as a rich table, one row per (B, column) (and A and suite when they vary), then the notes."""
    from rich.table import Table

    from protobench.cli.flags import page_console

    several_a = len({r.a for r in rows}) > 1
    several_suites = len({r.suite for r in rows}) > 1
    table = Table(title=title, caption=footnote)
    names = ["suite"] * several_suites + ["A"] * several_a
    names += ["B", "column", "A mean", "B mean", "diff", "95% CI", "p (t)", "p adj", "p (sign-flip)", "detectable"]
    names += ([] if margin is None else [f"p (TOST +-{margin:g})"]) + ["test", "verdict"]
    for name in names:
        table.add_column(name, overflow="fold")
    for r in rows:
        ci = "-" if r.ci_low is None else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        cells = [r.suite] * several_suites + [r.a] * several_a
        cells += [
            r.b, r.column, number(r.mean_a, ".2f"), number(r.mean_b, ".2f"), number(r.diff, "+.2f"), ci,
            number(r.p_value, ".3g"), number(r.p_adjusted, ".3g"), number(r.p_sign_flip, ".4g"),
            "-" if r.detectable is None else f"+-{r.detectable:.2f}",
        ]  # fmt: skip
        cells += [number(r.p_equivalence, ".3g")] * (margin is not None) + [r.test or "-", r.verdict]
        table.add_row(*cells)
    console = page_console()
    console.print(table)
    for line in lines:
        console.print(line, markup=False, highlight=False)
