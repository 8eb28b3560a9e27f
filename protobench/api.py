"""The Python API (docs/api.md): a results store as pandas DataFrames, for notebooks and scripts.

``load_results`` is the store as one tidy table (protobench/reporting/export.py); ``report`` and ``compare`` return
what ``protobench report`` and ``protobench compare`` print, without the formatting. The commands call
these same functions, so a number read here is the number the command shows. ``import protobench as pb``
reaches each as ``pb.load_results``, ``pb.report`` and ``pb.compare``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from protobench.core.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from protobench.reporting.comparison import Row
    from protobench.reporting.table import Table
    from protobench.suite.definition import Suite

Warner = Callable[[Path, str], None]
TableName = Literal["records", "classes", "history"]
FORMATS = ("csv", "parquet", "jsonl")


def warn_unreadable(path: Path, why: str) -> None:
    """The API's ``on_unreadable``: a Python warning per unreadable record file (the CLI prints a line)."""
    warnings.warn(f"ignored unreadable record {path} ({why}); delete it or rerun the cell", stacklevel=3)


def store_suites(results: str | Path, suite: str | Sequence[str] | None) -> tuple[Path, list[str] | None]:
    """The store folder and the suites asked for, each of which must have a folder in it (a one-line
    UserError otherwise, naming the suites that are there)."""
    store = Path(results)
    if store.exists() and not store.is_dir():
        raise UserError(f"--results {store} is a file, not a folder; point --results at a results folder")
    if not store.is_dir():
        raise UserError(f"--results {store} does not exist; run a suite first or point at a results folder")
    names = [suite] if isinstance(suite, str) else list(suite or [])
    there = sorted(p.name for p in store.iterdir() if p.is_dir() and next(p.glob("*/*.json"), None) is not None)
    for name in names:
        if name not in there:
            raise UserError(f"suite '{name}' has no records under {store}{did_you_mean(name, there)}; "
                            f"suites there: {', '.join(there) or 'none'}")  # fmt: skip
    return store, names or None


def load_results(
    results: str | Path = "results",
    suite: str | Sequence[str] | None = None,
    *,
    table: TableName = "records",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The records of ``results`` (of ``suite`` when given) as one DataFrame (docs/export.md).

    ``table="records"``: one row per record file, failed, stale and unreadable ones included and marked
    (``status``, ``stale``, ``current_setting``); ``"classes"``: one row per record and class;
    ``"history"``: one row per record and epoch. ``columns`` keeps only those columns, in that order.
    The store is only read.
    """
    from protobench.reporting import export as tidy

    store, names = store_suites(results, suite)
    entries = tidy.read_store(store, names)
    if table == "records":
        frame = tidy.records_table(entries)
    elif table == "classes":
        frame = tidy.classes_table(entries)
    elif table == "history":
        frame = tidy.history_table(entries)
    else:
        raise UserError(f"table '{table}' is unknown; use one of {', '.join(tidy.TABLES)}")
    if columns is not None:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            allowed = list(frame.columns)
            raise UserError(f"column '{unknown[0]}' is unknown{did_you_mean(unknown[0], allowed)}; "
                            f"see docs/export.md for the columns of the {table} table")  # fmt: skip
        frame = frame[list(columns)]
    return frame


def export(
    results: str | Path,
    out: str | Path,
    fmt: str = "csv",
    suite: str | Sequence[str] | None = None,
    *,
    table: TableName = "records",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write ``load_results(results, suite, table=..., columns=...)`` to ``out`` as csv, parquet or jsonl
    (``out`` "-": standard output, csv and jsonl only); returns the table written. ``out`` may not lie
    inside the store: an export never changes it."""
    import sys

    from protobench.reporting.export import WRITERS

    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise UserError("--format parquet needs pyarrow: pip install 'protobench[parquet]' (or use csv or jsonl)")
    target = Path(out)
    if str(out) == "-" and fmt == "parquet":
        raise UserError("--format parquet writes a file; give --out FILE.parquet")
    if str(out) != "-":
        if target.is_dir():
            raise UserError(f"--out {target} is a folder; give a file name, e.g. --out {target / ('records.' + fmt)}")
        if Path(results).resolve() in target.resolve().parents:
            raise UserError(f"--out {target} is inside the results store {results}; write the export elsewhere")
    frame = load_results(results, suite, table=table, columns=columns)
    if str(out) == "-":
        WRITERS[fmt](frame, sys.stdout)
        return frame
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        WRITERS[fmt](frame, target)
    except OSError as error:
        raise UserError(f"--out {target}: cannot write ({error.strerror}); give a path you can write") from None
    return frame


def suite_argument(name_or_path: str) -> tuple[str, Suite | None]:
    """(the name its records are stored under, its suite file) of a SUITE argument: a suite file's path (records
    under its ``name:``, as ``run`` writes them) or a name (its shipped file when there is one, else None)."""
    from protobench.suite.definition import available_suites, load_suite

    looks_like_path = Path(name_or_path).suffix in (".yaml", ".yml") or "/" in name_or_path or os.sep in name_or_path
    if looks_like_path or name_or_path in available_suites():
        loaded = load_suite(name_or_path)
        return loaded.name, loaded
    return name_or_path, None


@dataclass
class Report:
    """What ``protobench report`` shows: a table per suite and metric, the records read, and each suite's file."""

    tables: list[Table]
    records: list[dict[str, Any]]
    suites: dict[str, Suite | None] = field(default_factory=dict)


def report_tables(
    suite: str | Sequence[str] | None = None,
    results: str | Path = "results",
    *,
    metric: str | Sequence[str] | None = None,
    vs: str | None = None,
    device: str | None = None,
    known: dict[str, Suite] | None = None,
    on_unreadable: Warner | None = warn_unreadable,
    correction: str = "holm",
) -> Report:
    """The tables ``protobench report`` renders: of ``suite`` (names or suite files; default: every suite in the
    store), of the ``metric`` names ``--metric`` takes (default: final and val-selected), only records whose
    device contains ``device``, each cell marked against method ``vs`` with the p-values of a table corrected
    together by ``correction`` (docs/compare.md). UserError when nothing is finished."""
    from protobench.reporting.comparison import check_correction
    from protobench.reporting.report import build_tables, resolve_metrics
    from protobench.store.records import iter_records
    from protobench.suite.definition import available_suites, load_suite

    check_correction(correction)
    given = dict(suite_argument(name) for name in ([suite] if isinstance(suite, str) else list(suite or [])))
    names = list(given)
    records = list(iter_records(Path(results), names or None, on_unreadable))
    wanted = [metric] if isinstance(metric, str) else list(metric or [])
    metrics = [name.strip() for text in wanted for name in text.split(",") if name.strip()]
    if wanted and not metrics:
        raise UserError("--metric is empty; give metric names, e.g. --metric nc1 or --metric final,ece")
    keys = None
    if metrics and records:  # names known anywhere in the store, so an older suite's gap is not "unknown"
        keys = resolve_metrics(metrics, list(iter_records(Path(results), None, on_unreadable)) if names else records)
    if device:
        records = [r for r in records if device.lower() in str(r.get("device", "")).lower()]
    names = names or sorted({r["suite"] for r in records})
    suites: dict[str, Suite | None] = {}
    for name in names:  # run's own suite (its flags applied) first, then the file named on the command line
        suites[name] = (known or {}).get(name) or given.get(name)
        suites[name] = suites[name] or (load_suite(name) if name in available_suites() else None)
    tables = build_tables(records, suites, vs, keys, correction)
    if not tables:
        where = f"for {', '.join(names) or 'any suite'} under {results}"
        if keys:
            raise UserError(
                f"no finished results with {', '.join(keys)} {where} (records made before a metric was recorded, "
                "or where it is undefined, have none); try another --metric"
            )
        raise UserError(f"no finished results {where}; run a suite first")
    return Report(tables, records, suites)


def report(
    suite: str | Sequence[str] | None = None,
    results: str | Path = "results",
    *,
    metric: str | Sequence[str] | None = None,
    vs: str | None = None,
    device: str | None = None,
    correction: str = "holm",
) -> pd.DataFrame:
    """``protobench report``'s cells as one long DataFrame: suite, metric, method, column, mean, std, n, status,
    the paper's figure and check where a suite has one, and the ``vs`` marker (``correction`` over each
    table's cells). ``attrs["titles"]`` and ``attrs["notes"]`` hold each table's title and notes, keyed by
    (suite, metric)."""
    built = report_tables(suite, results, metric=metric, vs=vs, device=device, correction=correction)
    frames = [table.cells.assign(suite=table.suite, metric=table.metric) for table in built.tables]
    frame = pd.concat(frames, ignore_index=True)
    leading = ["suite", "metric", "method", "column", "mean", "std", "n", "status"]
    frame = frame[leading + [c for c in frame.columns if c not in leading]]
    frame.attrs["titles"] = {(t.suite, t.metric): t.title for t in built.tables}
    frame.attrs["notes"] = {(t.suite, t.metric): list(t.notes) for t in built.tables}
    return frame


@dataclass
class Comparison:
    """What ``protobench compare`` shows: its rows, the notes beneath them, the family size and the caption."""

    suite: str
    rows: list[Row]
    notes: list[str]
    size: int
    title: str
    caption: str
    request: dict[str, Any]


def comparison(
    suite: str,
    a: str | None = None,
    b: str | Sequence[str] | None = None,
    results: str | Path = "results",
    *,
    family: bool = False,
    metric: str = "final",
    correction: str = "holm",
    margin: float | None = None,
    seeds: Sequence[int] | None = None,
    without_reused: bool = False,
    on_unreadable: Warner | None = warn_unreadable,
    b_results: str | Path | None = None,
) -> Comparison:
    """Method ``a`` against each ``b`` at every column of ``suite`` (a name, or a suite file whose ``name:`` the
    records are stored under; or, with ``family``, the suite file's declared family), corrected by
    ``correction`` over the tests (docs/compare.md). ``seeds`` keeps only the records of those seeds;
    ``without_reused`` leaves out, in each suite, every seed at which one of its records was copied from another
    suite (``reused_from``): the analysis on the seeds that suite ran itself. ``b_results``: B's records come
    from that store and A's from ``results``, so one method can be set against itself in two stores (packed
    against solo, GPU against CPU); each B is then named ``B (STORE)``."""
    from protobench.reporting.comparison import check_correction, check_margin, metric_key, rows_caption
    from protobench.store.records import iter_records
    from protobench.suite.definition import load_suite

    key = metric_key(metric)
    check_correction(correction)
    check_margin(margin)
    if family and (a is not None or b is not None):
        raise UserError("--family takes A and B from the suite's 'family' key; give only SUITE")
    if not family and (a is None or b is None):
        raise UserError("give methods A and B (protobench compare SUITE A B), or --family for the suite's family")
    if family and b_results is not None:
        raise UserError("--b-results reads method B's records from another store; it takes A and B, not --family")
    request = {"metric": metric, "metric_key": key, "correction": correction, "margin": margin}
    if family:
        from protobench.reporting.comparison import family_comparison

        declared = load_suite(suite)
        records = only_seeds(list(iter_records(Path(results), declared.family_suites, on_unreadable)), seeds)
        records = drop_reused_seeds(records) if without_reused else records
        check_family_request(records, declared, str(results))
        rows, lines, size = family_comparison(records, declared, metric, correction, margin)
        title = f"{declared.name}: the declared family ({size} tests), {metric} test accuracy (%)"
        request = {"suite": declared.name, "family": True, **request}
    else:
        from protobench.reporting.comparison import comparison as compare_rows
        from protobench.reporting.comparison import setting_differences

        bs = [m.strip() for m in b.split(",")] if isinstance(b, str) else list(b or [])
        bs = list(dict.fromkeys(m for m in bs if m))
        name, known = suite_argument(suite)
        records = only_seeds(list(iter_records(Path(results), [name], on_unreadable)), seeds)
        if b_results is not None:
            records, bs = from_two_stores(records, a, bs, Path(b_results), name, seeds, on_unreadable)
        records = drop_reused_seeds(records) if without_reused else records
        check_request(records, name, a, bs, str(results) if b_results is None else f"{results} and {b_results}")
        rows, lines, size = compare_rows(records, name, a, bs, metric, known, correction, margin)
        title = f"{name}: A = {a} vs B = {', '.join(bs)}, {metric} test accuracy (%)"
        request = {"suite": name, "a": a, "b": bs, "family": False, **request}
        if b_results is not None:
            request["b_results"] = str(b_results)
            lines += setting_differences(records, a, bs)
    if seeds is not None:
        title += f", seeds {','.join(map(str, seeds))} only"
        request["seeds"] = list(seeds)
    if without_reused:
        title += ", without the seeds of reused records"
        request["without_reused"] = True
    footnote = rows_caption(rows, correction, size, margin, family)
    tested = sum(row.tested for row in rows)
    return Comparison(request["suite"], rows, lines, size, title, footnote, {**request, "tested": tested})


def compare(
    suite: str,
    a: str | None = None,
    b: str | Sequence[str] | None = None,
    results: str | Path = "results",
    *,
    family: bool = False,
    metric: str = "final",
    correction: str = "holm",
    margin: float | None = None,
    seeds: Sequence[int] | None = None,
    without_reused: bool = False,
    b_results: str | Path | None = None,
) -> pd.DataFrame:
    """``protobench compare``'s rows as a DataFrame (one row per B and column: means, diff, CI, p, corrected p,
    sign-flip p, detectable difference, test, verdict); ``attrs`` holds the notes, caption and family size."""
    found = comparison(suite, a, b, results, family=family, metric=metric, correction=correction, margin=margin,
                       seeds=seeds, without_reused=without_reused, b_results=b_results)  # fmt: skip
    frame = pd.DataFrame([row.as_dict() for row in found.rows])
    frame.attrs.update(notes=found.notes, caption=found.caption, family_size=found.size, title=found.title)
    return frame


def from_two_stores(
    records: list[dict[str, Any]], a: str, bs: list[str], b_results: Path, suite: str,
    seeds: Sequence[int] | None, on_unreadable: Warner | None,
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """A's records (of ``records``) with each B's from the store ``b_results``, renamed ``B (STORE)``, and
    those names: the rows of one comparison, wherever their records are."""
    from protobench.store.records import iter_records

    if not b_results.is_dir():
        raise UserError(f"--b-results {b_results} is not a folder; point it at the results store holding B's records")
    label = {b: f"{b} ({b_results})" for b in bs}
    theirs = only_seeds(list(iter_records(b_results, [suite], on_unreadable)), seeds)
    moved = [{**r, "method": label[r["method"]]} for r in theirs if r.get("method") in label]
    return [r for r in records if r.get("method") == a] + moved, list(label.values())


def only_seeds(records: list[dict[str, Any]], seeds: Sequence[int] | None) -> list[dict[str, Any]]:
    """The records of ``seeds`` (all of them when None); UserError for an empty list of seeds."""
    if seeds is None:
        return records
    if not seeds:
        raise UserError("--seeds is empty; give the seeds to keep, e.g. --seeds 5,6,7")
    return [r for r in records if r["seed"] in set(seeds)]


def drop_reused_seeds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without, in each suite, the seeds at which any record of that suite is a copy (``reused_from``),
    for every row of the suite, so the pairs by seed stay whole."""
    reused = {(r["suite"], r["seed"]) for r in records if r.get("reused_from")}
    return [r for r in records if (r["suite"], r["seed"]) not in reused]


def check_request(records: list[dict[str, Any]], suite_name: str, a: str, bs: list[str], where: str) -> None:
    """UserError unless the suite has records, A and every B have some, and A is not among the Bs."""
    if not bs:
        raise UserError("give at least one method B to compare A with")
    if a in bs:
        raise UserError(f"A '{a}' is also among B ({', '.join(bs)}); compare it with other methods")
    mine = [r for r in records if r.get("suite") == suite_name]
    if not mine:
        raise UserError(f"no records of suite {suite_name} under {where}; run it first")
    present = sorted({r["method"] for r in mine})
    for method in (a, *bs):
        if method not in present:
            raise UserError(
                f"method '{method}' has no records of suite {suite_name} under {where}"
                f"{did_you_mean(method, present)}; methods there: {', '.join(present)}"
            )


def check_family_request(records: list[dict[str, Any]], suite: Suite, where: str) -> None:
    """UserError unless ``suite`` declares a family and some of the suites it names have records."""
    if not suite.family:
        raise UserError(
            f"suite {suite.name} declares no family; add a 'family' key to {suite.path or 'its file'} "
            "(docs/compare.md) or give methods A and B"
        )
    names = suite.family_suites
    if not any(r.get("suite") in names for r in records):
        raise UserError(f"no records of suite {' or '.join(names)} under {where}; run the family's suites first")
