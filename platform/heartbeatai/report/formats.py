"""A report table written as CSV (its numbers), LaTeX (booktabs), Markdown or an HTML fragment.

Only the CSV keeps the numbers as numbers (a figure, its low and high: what a reader
recomputes from); the other formats print the table as a reader sees it (tables.py, `shown`).
"""

from __future__ import annotations

import html
import re

from heartbeatai.report.tables import ReportTable

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


# Above this many rows a table breaks across pages (longtable) instead of floating whole.
LONG_TABLE_ROWS = 30


def to_tex(table: ReportTable, partial: bool = False) -> str:
    """A booktabs table: `table` + `tabular` up to LONG_TABLE_ROWS rows, a `longtable` (its
    header repeated on every page) above. Needs \\usepackage{booktabs} (and longtable)."""
    columns = list(table.shown.columns)
    spec = "l" * len(columns)
    caption = rf"\caption{{{tex_escape(table.title)}. {tex_escape(table.caption)}}}\label{{tab:{table.key}}}"
    header = [" & ".join(tex_escape(c) for c in columns) + r" \\"]
    body = [" & ".join(tex_escape(v) for v in row) + r" \\" for row in table.shown.itertuples(index=False)]
    notes = [tex_escape(note) for note in notes_of(table, partial)]
    if len(body) > LONG_TABLE_ROWS:
        lines = [r"{\footnotesize", rf"\begin{{longtable}}{{{spec}}}", caption + r" \\", r"\toprule", *header,
                 r"\midrule", r"\endfirsthead", r"\toprule", *header, r"\midrule", r"\endhead", r"\bottomrule",
                 r"\endfoot", *body]
        lines += [r"\end{longtable}"] + [rf"\par{{\scriptsize {note}}}" for note in notes] + ["}"]
        return "\n".join(lines) + "\n"
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", caption, rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule", *header, r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip\parbox{{\linewidth}}{{\scriptsize {note}}}" for note in notes]
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
