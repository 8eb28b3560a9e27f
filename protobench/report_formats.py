"""The report's tables as Markdown, CSV, LaTeX (booktabs) or one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from protobench.errors import UserError
from protobench.report import FORMATS, Table, best_cells, metric_info

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


#: How the delta column shows ``report.paper_check``: the paper's figure against our 95% interval of the mean.
PAPER_CI_LABELS = {"in": "in CI", "out": "out of CI"}


def paper_delta(delta: float, check: str | None) -> str:
    """``-1.50 (in CI)``: our mean minus the paper's, and whether the paper's figure is in our 95% interval."""
    return f"{delta:+.2f}" + (f" ({PAPER_CI_LABELS.get(check, check)})" if isinstance(check, str) else "")


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
                    paper_delta(row["mean"] - paper, row.get("paper_ci")) if has and row["status"] == "ok" else "-"
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
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.05em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.8em; text-align: right; white-space: nowrap; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
ul.notes { color: #555; font-size: 0.9em; padding-left: 1.2em; }
figure { margin: 1em 0; }
img { max-width: 100%; }
"""


def pm(text: str) -> str:
    """``text`` escaped for HTML, +- as the &plusmn; entity."""
    return html.escape(text).replace("+-", "&plusmn;")


def html_table(table: Table) -> str:
    """One table as an HTML section: its title as a heading, the table (best per column bold), its notes."""
    header, rows, bold = grid(table)

    def cell(text: str, best: bool) -> str:
        text = pm(text)
        return f"<td><b>{text}</b></td>" if best else f"<td>{text}</td>"

    lines = ["<section>", f"<h2>{pm(table.title)}</h2>", "<table>", "<thead>"]
    lines.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    lines += ["</thead>", "<tbody>"]
    for i, row in enumerate(rows):
        lines.append("<tr>" + "".join(cell(c, (i, j) in bold) for j, c in enumerate(row)) + "</tr>")
    lines += ["</tbody>", "</table>"]
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


def render_html(tables: list[Table], images: Sequence[str | Path] = ()) -> str:
    """One self-contained page (inline CSS, no external resources): every table, then the PNG ``images``
    inlined under a "Plots" heading; ASCII only (other characters as references). The same tables and images
    give the same bytes."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>protobench report</title>",
        f"<style>\n{HTML_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>protobench report</h1>",
        *(html_table(t) for t in tables),
    ]
    if images:
        parts += ["<section>", "<h2>Plots</h2>", *(html_image(p) for p in images), "</section>"]
    parts += ["</body>", "</html>"]
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
