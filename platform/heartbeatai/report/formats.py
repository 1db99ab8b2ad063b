"""A report table written as CSV (its numbers), LaTeX (booktabs), Markdown or an HTML fragment.

Only the CSV keeps the numbers as numbers (a figure, its low and high: what a reader
recomputes from); the other formats print the table as a reader sees it (tables.py, `shown`).
"""

from __future__ import annotations

import html
import re

import pandas as pd

from heartbeatai.report.tables import ReportTable

FORMATS = ("csv", "tex", "md", "html")
PARTIAL_NOTE = "PARTIAL: the study was still running when this report was written; rows of unfinished folds are missing."

# LaTeX's special characters in text, each with its escape.
_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$"}
_TEX_PATTERN = re.compile("|".join(re.escape(c) for c in _TEX_ESCAPES))


def tex_escape(text) -> str:
    return _TEX_PATTERN.sub(lambda m: _TEX_ESCAPES[m.group()], str(text))


def notes_of(table: ReportTable, partial: bool) -> list[str]:
    return ([PARTIAL_NOTE] if partial else []) + table.notes


def to_csv(table: ReportTable, partial: bool = False) -> str:
    text = table.data.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    return (f"# {PARTIAL_NOTE}\n" if partial else "") + text


def to_tex(table: ReportTable, partial: bool = False) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); long tables in a longtable would
    need the package too, so the table is plain tabular inside a table float."""
    columns = list(table.shown.columns)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize",
             rf"\caption{{{tex_escape(table.title)}. {tex_escape(table.caption)}}}",
             rf"\label{{tab:{table.key}}}", rf"\begin{{tabular}}{{{'l' * len(columns)}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in table.shown.itertuples(index=False):
        lines.append(" & ".join(tex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in notes_of(table, partial):
        lines.append(rf"\par\smallskip\parbox{{\linewidth}}{{\scriptsize {tex_escape(note)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _md_cell(value) -> str:
    return str(value).replace("|", r"\|").replace("\n", " ")


def to_md(table: ReportTable, partial: bool = False) -> str:
    columns = list(table.shown.columns)
    lines = [f"### {table.title}", "", table.caption, "",
             "| " + " | ".join(_md_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.shown.itertuples(index=False)]
    lines.append("")
    lines += [f"*{note}*" + "\n" for note in notes_of(table, partial)]
    return "\n".join(lines) + "\n"


def to_html(table: ReportTable, partial: bool = False) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in table.shown.itertuples(index=False))
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes_of(table, partial))
    return (f'<section id="{table.key}"><h3>{html.escape(table.title)}</h3><p>{html.escape(table.caption)}</p>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            f"{notes}</section>")


WRITERS = {"csv": to_csv, "tex": to_tex, "md": to_md}


def frame_from_csv(text: str) -> pd.DataFrame:
    """A table's CSV read back (its PARTIAL comment line skipped)."""
    import io

    return pd.read_csv(io.StringIO(text), comment=None, skiprows=1 if text.startswith("#") else 0)
