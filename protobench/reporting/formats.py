"""The report's tables as Markdown, CSV, LaTeX (booktabs) or one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from protobench.core.errors import UserError
from protobench.reporting.table import FORMATS, Table, best_cells, metric_info

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def format_cell(row: pd.Series, digits: int = 2) -> str:
    """``86.21 +- 0.35 (3)`` (and a ``--vs`` marker), ``n/a``, ``failed (reason)`` or ``-``; ``digits`` decimals."""
    if row["status"] == "ok":
        marker = row.get("marker") or ""
        text = f"{row['mean']:.{digits}f} +- {row['std']:.{digits}f} ({row['n']})"
        return text + (f" {marker}" if marker else "")
    if row["status"] == "error":
        reason = row.get("reason")
        return f"failed ({reason})" if isinstance(reason, str) and reason else "failed"
    return {"n/a": "n/a"}.get(row["status"], "-")


#: How the delta column shows ``report_tables.paper_check``: the paper's figure (one run) against our 95%
#: prediction interval for one new run (docs/compare.md, "The paper column of report").
PAPER_PI_LABELS = {"in": "in PI", "out": "out of PI"}


def paper_delta(delta: float, check: str | None) -> str:
    """``-1.50 (in PI)``: our mean minus the paper's, and whether the paper's figure is in our prediction interval."""
    return f"{delta:+.2f}" + (f" ({PAPER_PI_LABELS.get(check, check)})" if isinstance(check, str) else "")


def grid(table: Table) -> tuple[list[str], list[list[str]], set[tuple[int, int]]]:
    """Header and rows of the human-readable table (paper and delta columns where numbers exist), and the
    (row, column) positions of the best mean of each column (``report.best_cells``)."""
    has_paper = table.cells["paper"].notna().any()
    digits = metric_info(table.metric).digits
    best = best_cells(table)
    header = ["method"]
    for column in table.columns:
        label = f"d={column}" if column.isdigit() else column
        header.append(label)
        if has_paper:
            header += [f"{label} paper", f"{label} delta"]
    rows: list[list[str]] = []
    bold: set[tuple[int, int]] = set()
    for i, method in enumerate(table.methods):
        line = [method]
        for column in table.columns:
            row = table.cells[(table.cells["method"] == method) & (table.cells["column"] == column)].iloc[0]
            if (method, column) in best:
                bold.add((i, len(line)))
            line.append(format_cell(row, digits))
            if has_paper:
                paper = row["paper"]
                has = paper is not None and not (isinstance(paper, float) and math.isnan(paper))
                line.append(f"{paper:.2f}" if has else "-")
                line.append(
                    paper_delta(row["mean"] - paper, row.get("paper_pi")) if has and row["status"] == "ok" else "-"
                )
        rows.append(line)
    return header, rows, bold


def render_markdown(table: Table) -> str:
    """A GitHub Markdown table with its title and notes."""
    header, rows, _ = grid(table)
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [f"\n_{n}_" for n in table.notes]
    return "\n".join(lines) + "\n"


def tex(text: str) -> str:
    """A cell's text for LaTeX: +- as $\\pm$, markers in math mode, _ and % escaped."""
    text = text.replace("+-", "$\\pm$").replace("_", "\\_").replace("%", "\\%")
    return text.replace(" >", " $>$").replace(" <", " $<$").replace(" ~", " $\\sim$")


def render_latex(table: Table) -> str:
    """A booktabs tabular with +- as $\\pm$, the best mean of each column in bold, title and notes as comments."""
    header, rows, bold = grid(table)
    lines = [
        f"% {table.title}",
        "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        "\\toprule",
        " & ".join(tex(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(rows):
        cells = [f"\\textbf{{{tex(c)}}}" if (i, j) in bold else tex(c) for j, c in enumerate(row)]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def render_csv(tables: list[Table]) -> str:
    """All tables in long form: suite, metric, method, column, mean, std, n, paper, status, reason (failed)."""
    frames = []
    for table in tables:
        frame = table.cells.copy()
        frame.insert(0, "metric", table.metric)
        frame.insert(0, "suite", table.suite)
        frames.append(frame)
    return pd.concat(frames).to_csv(index=False, float_format="%.4f")


HTML_STYLE = """\
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; line-height: 1.4;
       max-width: 1500px; margin: 1.5em auto; padding: 0 2em; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.1em; margin-top: 2.2em; padding-bottom: 0.2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.8em 0 0.2em; }
p.key, p.about { color: #444; font-size: 0.92em; margin: 0.3em 0 0.8em; max-width: 62em; }
p.key code { font-size: 1.1em; }
nav { display: inline-block; background: #f5f5f5; padding: 0.5em 1.5em 0.5em 0.5em; font-size: 0.92em; }
nav ul { margin: 0.2em 0; } nav a { color: #1a4f8b; text-decoration: none; } nav a:hover { text-decoration: underline; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.8em; text-align: right; white-space: nowrap; border-bottom: 1px solid #ddd; }
td { font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
tbody tr:hover { background: #f2f6fb; }
ul.notes { color: #555; font-size: 0.9em; padding-left: 1.2em; }
div.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 0 2em; }
figure { margin: 0.8em 0 1.4em; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #666; font-family: ui-monospace, monospace; }
"""
#: What a reader needs to read every table, said once at the top of the page (HTML).
HTML_KEY = (
    "Each cell: mean &plusmn; standard deviation over seeds, and (n) the number of seeds. <b>Bold</b>: the best "
    "mean of its column. <code>n/a</code>: the method cannot run at that setting (the notes say why); "
    "<code>failed</code>: a seed raised; <code>-</code>: no finished record for that cell (not run yet)."
)
#: The plot kinds of ``protobench.reporting.plots`` (file names ``<suite>-<kind>[-<detail>].png``), in page order:
#: heading, what to read from it, and whether its figures sit side by side in a grid (small, many).
PLOT_KINDS: dict[str, tuple[str, str, bool]] = {
    "accuracy-vs-dim": ("Accuracy against the embedding dimension",
                        "Per method, mean +- std over seeds at each d (log axis); val-selected: the test accuracy "
                        "at the epoch of best validation accuracy.", False),
    "accuracy-vs-ratio": ("Accuracy against the imbalance ratio", "Long-tailed training sets, n_max / n_min.", False),
    "shot-groups": ("Accuracy by shot group",
                    "Long-tailed: classes with many (> 100), medium (20-100) and few (< 20) training images.", False),
    "assignment-changes": ("Prototype re-assignments",
                           "Methods that re-match classes to prototypes: classes moved to another one, per epoch.",
                           False),
    "training-curves": ("Training curves", "Train loss and test accuracy per epoch, mean over seeds.", False),
    "per-class-accuracy": ("Accuracy per class",
                           "Final-epoch test accuracy of each class, mean over seeds: which classes each method "
                           "gets wrong.", False),
    "embeddings": ("Test embeddings on the circle and sphere",
                   "At d = 2 and 3: the first seed's test features, coloured by class, with each class's anchor "
                   "(prototype, classifier row or centroid) as a large circle.", True),
}  # fmt: skip


def pm(text: str) -> str:
    """``text`` escaped for HTML, +- as the &plusmn; entity."""
    return html.escape(text).replace("+-", "&plusmn;")


def anchor(*parts: str) -> str:
    """An HTML id from ``parts``: letters, digits and - only."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", "-".join(parts)).strip("-").lower()


def html_table(table: Table, ident: str) -> str:
    """One table as an HTML section: its title as a heading, the table (best per column bold), its notes."""
    header, rows, bold = grid(table)

    def cell(text: str, best: bool) -> str:
        text = pm(text)
        return f"<td><b>{text}</b></td>" if best else f"<td>{text}</td>"

    lines = [f'<section id="{ident}">', f"<h2>{pm(table.title)}</h2>", '<div class="scroll">', "<table>", "<thead>"]
    lines.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    lines += ["</thead>", "<tbody>"]
    for i, row in enumerate(rows):
        lines.append("<tr>" + "".join(cell(c, (i, j) in bold) for j, c in enumerate(row)) + "</tr>")
    lines += ["</tbody>", "</table>", "</div>"]
    if table.notes:
        lines += ['<ul class="notes">', *(f"<li>{html.escape(n)}</li>" for n in table.notes), "</ul>"]
    lines.append("</section>")
    return "\n".join(lines)


def html_image(path: str | Path) -> str:
    """A PNG file as a figure with the image inlined as base64 and its file name as the caption."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"plot {path}: cannot read ({error.strerror})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"plot {path} is not a PNG file; only PNG images are inlined")
    name = html.escape(path.name)
    encoded = base64.b64encode(data).decode("ascii")
    image = f'<img alt="{name}" src="data:image/png;base64,{encoded}">'
    return f"<figure>\n{image}\n<figcaption>{name}</figcaption>\n</figure>"


def plot_groups(images: Sequence[str | Path], suites: Sequence[str]) -> dict[tuple[str, str], list[Path]]:
    """``images`` by (suite, kind) in page order: suites as given, kinds as ``PLOT_KINDS``; a file that is not
    named ``<suite>-<kind>...`` is kind "" (other plots) of suite "", after the rest."""
    found: dict[tuple[str, str], list[Path]] = {}
    for image in map(Path, images):
        stem = image.name.removesuffix(".png")
        suite = next((s for s in sorted(suites, key=len, reverse=True) if stem.startswith(f"{s}-")), "")
        rest = stem[len(suite) + 1 :] if suite else ""
        kind = next((k for k in PLOT_KINDS if rest == k or rest.startswith(f"{k}-")), "")
        found.setdefault((suite, kind) if kind else ("", ""), []).append(image)
    order = [*suites, ""]
    kinds = [*PLOT_KINDS, ""]
    return dict(sorted(found.items(), key=lambda item: (order.index(item[0][0]), kinds.index(item[0][1]))))


def plots_heading(suite: str) -> str:
    """``Plots: <suite>`` (HTML), or ``Plots`` for images of no known suite."""
    return f"Plots: {html.escape(suite)}" if suite else "Plots"


def html_plots(groups: dict[tuple[str, str], list[Path]]) -> list[str]:
    """The plots of each suite under an h2, each kind under an h3 saying what it shows."""
    parts: list[str] = []
    for suite in dict.fromkeys(s for s, _ in groups):
        parts += [f'<section id="{anchor("plots", suite)}">', f"<h2>{plots_heading(suite)}</h2>"]
        for (own, kind), paths in groups.items():
            if own != suite:
                continue
            heading, about, side_by_side = PLOT_KINDS.get(kind, ("Other plots", "", False))
            parts += [f'<section id="{anchor("plots", suite, kind)}">', f"<h3>{html.escape(heading)}</h3>"]
            parts += [f'<p class="about">{pm(about)}</p>'] if about else []
            parts += ['<div class="grid">' if side_by_side else "<div>", *(html_image(p) for p in paths), "</div>"]
            parts.append("</section>")
        parts.append("</section>")
    return parts


def html_contents(tables: list[Table], idents: list[str], groups: dict[tuple[str, str], list[Path]]) -> str:
    """A list of links to every table and every kind of plot."""
    items = [
        f'<li><a href="#{ident}">{html.escape(t.suite)}: {pm(metric_info(t.metric).title)}</a></li>'
        for t, ident in zip(tables, idents, strict=True)
    ]
    for suite in dict.fromkeys(s for s, _ in groups):
        kinds = [k for s, k in groups if s == suite]
        links = [
            f'<a href="#{anchor("plots", suite, k)}">{html.escape(PLOT_KINDS.get(k, ("other",))[0].lower())}</a>'
            for k in kinds
        ]
        items.append(f'<li><a href="#{anchor("plots", suite)}">{plots_heading(suite)}</a> ({", ".join(links)})</li>')
    return "<nav>\n<b>Contents</b>\n<ul>\n" + "\n".join(items) + "\n</ul>\n</nav>"


def render_html(tables: list[Table], images: Sequence[str | Path] = ()) -> str:
    """One self-contained page (inline CSS, no external resources): a heading naming the suites, how to read
    the cells, a list of contents, every table, then the PNG ``images`` inlined, grouped by suite and kind of
    plot (``PLOT_KINDS``); ASCII only (other characters as references). The same tables and images give the
    same bytes."""
    suites = list(dict.fromkeys(t.suite for t in tables))
    title = "protobench report" + (f": {', '.join(suites)}" if suites else "")
    idents = [anchor("table", t.suite, t.metric) for t in tables]
    groups = plot_groups(images, suites)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{HTML_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="key">{HTML_KEY}</p>',
        html_contents(tables, idents, groups),
        *(html_table(t, ident) for t, ident in zip(tables, idents, strict=True)),
        *html_plots(groups),
        "</body>",
        "</html>",
    ]
    page = "\n".join(parts) + "\n"
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")  # ASCII whatever encoding the file is written in


def render(tables: list[Table], fmt: str, images: Sequence[str | Path] | None = None) -> str:
    """Render ``tables`` as md, csv, latex or html; ``images`` (PNG files) are inlined by html only."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if images and fmt != "html":
        raise ValueError(f"images are inlined in html only, not in {fmt}")
    if fmt == "html":
        return render_html(tables, images or ())
    if fmt == "csv":
        return render_csv(tables)
    renderer = render_markdown if fmt == "md" else render_latex
    return "\n".join(renderer(t) for t in tables)
