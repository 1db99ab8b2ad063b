"""`heartbeatai report`: a study's tables and figures for a paper, from the results store alone.

Writes into one folder: every table of tables.TABLES in each format asked for (CSV keeps
the numbers), every figure of figures.FIGURES as PDF, 300-dpi PNG and the CSV of what it
draws, report.html (one self-contained file) and a README.md naming every file, the
study's provenance and the command that wrote it. A table or figure that cannot be built
(a missing or damaged table, an analysis that did not run) is one printed line, and the
rest is still written. A study still running is refused unless `partial`, and then every
table and figure says it is partial.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from heartbeatai.report import FORMATS, formats
from heartbeatai.report.tables import TABLES, ReportInputs
from heartbeatai.results import schema
from heartbeatai.results.notebook import StudyResults, open_study
from heartbeatai.results.summary import compute_summary

PNG_DPI = 300
HTML_FILE = "report.html"


class ReportError(Exception):
    """A study the report cannot be written for: printed as one line."""


@dataclass
class ReportResult:
    out: Path
    written: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # table or figure -> why


def study_state(study: StudyResults) -> dict:
    return compute_summary(study.store, study.name)


def write_report(study_dir: str | os.PathLike, out: str | os.PathLike, *, formats_wanted: Iterable[str] = FORMATS,
                 partial: bool = False, label_set: str = "noisy", command: str | None = None,
                 progress: Callable[[str], None] = print) -> ReportResult:
    try:
        study = open_study(study_dir)
    except FileNotFoundError as err:
        raise ReportError(str(err)) from None
    wanted = tuple(formats_wanted)
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ReportError(f"--format: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    state = study_state(study)
    if state["state"] == "empty":
        raise ReportError(f"{study_dir}: no trials yet, nothing to report")
    running = state["state"] == "running"
    if running and not partial:
        active = sum(state["trials"][s] for s in schema.ACTIVE_STATUSES)
        raise ReportError(f"{study_dir} is still running ({active} trial(s) pending or running): wait for it to "
                          "end, or pass --partial for a report that says it is partial")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out)
    for table in state["damaged_tables"]:
        progress(f"report: results/{table} has damaged parts; what could be read is reported")
    inputs = ReportInputs(study, label_set=label_set)
    built_tables, built_figures = [], []
    for key, builder in TABLES.items():
        try:
            table = builder(inputs)
        except Exception as err:  # noqa: BLE001 - one line per table, the rest still written
            result.skipped[key] = _reason(err)
            progress(f"report: {key} skipped: {result.skipped[key]}")
            continue
        for name in wanted:
            if name in formats.WRITERS:
                path = out / f"{key}.{name}"
                path.write_text(formats.WRITERS[name](table, running))
                result.written.append(path.name)
        built_tables.append(table)
    from heartbeatai.report.figures import FIGURES  # matplotlib: only once tables are out

    import matplotlib.pyplot as plt

    for key, builder in FIGURES.items():
        figure = None
        try:
            figure = builder(inputs)
            _save_figure(figure, out, running)
        except Exception as err:  # noqa: BLE001
            if figure is not None:
                plt.close(figure.figure)  # drawn but not saved: free it now, not at exit
            result.skipped[key] = _reason(err)
            progress(f"report: {key} skipped: {result.skipped[key]}")
            continue
        result.written += [f"{key}.pdf", f"{key}.png", f"{key}.csv"]
        built_figures.append(figure)
    provenance = study_provenance(study)
    summary = summary_lines(inputs)
    if "html" in wanted:
        (out / HTML_FILE).write_text(html_page(study, built_tables, built_figures, provenance, running, result,
                                                summary))
        result.written.append(HTML_FILE)
    for figure in built_figures:
        plt.close(figure.figure)
    (out / "README.md").write_text(readme(study, built_tables, built_figures, provenance, running, result, wanted,
                                          command, summary))
    result.written.append("README.md")
    return result


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if isinstance(err, (LookupError, ValueError)) else f"{type(err).__name__}: {text}"


def _save_figure(figure, out: Path, partial: bool) -> None:
    if partial:
        figure.figure.text(0.01, 0.005, "PARTIAL: study still running", fontsize=7, color="#D55E00")
    # Fixed metadata: the same study gives the same PDF bytes (no creation date).
    figure.figure.savefig(out / f"{figure.key}.pdf", metadata={"CreationDate": None, "Creator": "heartbeatai"})
    figure.figure.savefig(out / f"{figure.key}.png", dpi=PNG_DPI)
    text = figure.data.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    (out / f"{figure.key}.csv").write_text((f"# {formats.PARTIAL_NOTE}\n" if partial else "") + text)


def summary_lines(inputs: ReportInputs) -> list[str]:
    """What the study's analysis decided, as the study printed it when it ended."""
    from heartbeatai.report.figures import primary_metric
    from heartbeatai.study.closing_summary import closing_lines

    try:
        return closing_lines(inputs.study.store, inputs.study.name, primary_metric(inputs))
    except (LookupError, ValueError):
        return []


def study_provenance(study: StudyResults) -> dict:
    """Commit, package versions, data fingerprint and folds hash, as the study's selected run
    files recorded them (each distinct value, should folds differ)."""
    configs = study.table("best_configs")
    found: dict[str, list] = {"git_commit": [], "dataset_fingerprint": [], "folds_hash": [], "packages": []}
    for text in configs.get("run_file", []):
        try:
            provenance = (yaml.safe_load(text) or {}).get("provenance") or {}
        except yaml.YAMLError:
            continue
        for key in found:
            value = provenance.get(key)
            if value and value not in found[key]:
                found[key].append(value)
    return found


def _provenance_lines(provenance: dict) -> list[str]:
    lines = []
    for key, label in (("git_commit", "commit"), ("dataset_fingerprint", "data fingerprint"), ("folds_hash", "folds hash")):
        values = provenance.get(key) or ["not recorded"]
        lines.append(f"- {label}: {', '.join(f'`{v}`' for v in values)}")
    packages = provenance.get("packages") or []
    if packages:
        for i, versions in enumerate(packages):
            prefix = "- packages" if len(packages) == 1 else f"- packages ({i + 1})"
            lines.append(f"{prefix}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    else:
        lines.append("- packages: not recorded")
    return lines


def readme(study: StudyResults, tables_built, figures_built, provenance: dict, partial: bool, result: ReportResult,
           wanted: tuple[str, ...], command: str | None, summary: list[str] = ()) -> str:
    lines = [f"# Report of study `{study.name}`", ""]
    if partial:
        lines += [f"**{formats.PARTIAL_NOTE}**", ""]
    if summary:
        lines += ["## Summary", "", "```", *summary, "```", ""]
    lines += [f"Written {datetime.now(timezone.utc).isoformat(timespec='seconds')} from `{study.path}` by:", "",
              "```", command or f"heartbeatai report {study.path} --out {result.out}", "```", "",
              "## Provenance", "", *_provenance_lines(provenance), "", "## Tables", ""]
    table_formats = [f for f in wanted if f in formats.WRITERS]
    for table in tables_built:
        files = ", ".join(f"`{table.key}.{f}`" for f in table_formats)
        lines.append(f"- **{table.title}** ({files}): {table.caption}")
    lines += ["", "CSV files keep the numbers (a figure with `_lo`/`_hi` columns for its 95% interval); LaTeX "
              "(booktabs) and Markdown print them as `0.812 [0.790, 0.833]`, and a cell without a reliable interval "
              "says why.", "", "## Figures", ""]
    for figure in figures_built:
        lines.append(f"- **{figure.title}** (`{figure.key}.pdf`, `{figure.key}.png`, data `{figure.key}.csv`): "
                     f"{figure.caption}")
    if "html" in wanted:
        lines += ["", f"`{HTML_FILE}`: every table and figure in one self-contained file."]
    if result.skipped:
        lines += ["", "## Not written", ""] + [f"- `{key}`: {why}" for key, why in result.skipped.items()]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;
white-space:nowrap}thead th{border-bottom:2px solid #333}.scroll{overflow-x:auto;max-height:480px;overflow-y:auto}
.note{font-size:12px;color:#555}.partial{background:#fff3e0;padding:.5em 1em;border-left:4px solid #D55E00}
figure{margin:1.5em 0}figure img{max-width:100%}figcaption{font-size:13px;color:#444}nav a{margin-right:1em}
.summary{background:#f5f7fa;padding:.8em 1em;border-left:4px solid #0072B2;font-size:13px;white-space:pre-wrap}"""


def html_page(study: StudyResults, tables_built, figures_built, provenance: dict, partial: bool,
              result: ReportResult, summary: list[str] = ()) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.name)}: report</title>"
             f"<style>{_CSS}</style></head><body><h1>Study {html.escape(study.name)}</h1>"]
    if partial:
        parts.append(f"<p class='partial'>{html.escape(formats.PARTIAL_NOTE)}</p>")
    parts.append("<nav>" + "".join(f"<a href='#{t.key}'>{html.escape(t.title.split('.')[0])}</a>" for t in tables_built)
                 + "".join(f"<a href='#{f.key}'>{html.escape(f.key.split('_')[0].upper())}</a>" for f in figures_built)
                 + "</nav>")
    if summary:
        parts.append("<h2>Summary</h2><pre class='summary'>" + html.escape("\n".join(summary)) + "</pre>")
    parts.append("<h2>Provenance</h2><ul>" + "".join(
        f"<li>{html.escape(line[2:].replace('`', ''))}</li>" for line in _provenance_lines(provenance)) + "</ul>")
    parts.append("<h2>Tables</h2>")
    parts += [formats.to_html(table, partial) for table in tables_built]
    parts.append("<h2>Figures</h2>")
    for figure in figures_built:
        # The PNG already written (rendering again at a lower resolution costs more than the bytes).
        encoded = base64.b64encode((result.out / f"{figure.key}.png").read_bytes()).decode()
        parts.append(f"<figure id='{figure.key}'><img alt='{html.escape(figure.title)}' "
                     f"src='data:image/png;base64,{encoded}'><figcaption><b>{html.escape(figure.title)}.</b> "
                     f"{html.escape(figure.caption)} Data: {figure.key}.csv</figcaption></figure>")
    if result.skipped:
        parts.append("<h2>Not written</h2><ul>" + "".join(
            f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in result.skipped.items()) + "</ul>")
    parts.append(f"<script type='application/json' id='provenance'>{html.escape(json.dumps(provenance))}</script>")
    parts.append("</body></html>")
    return "".join(parts)
