"""Figures of the Studies view, and what every figure module shares: frames of the results
store in, plotly figures out. No I/O and no Dash here, so each is testable on its own.

Intervals are shown the one way everywhere: where the analysis marks a class interval
unreliable (``interval_reliable`` false: fewer test positives than the study's minimum)
no band is drawn and the positive count stands in its place (``count_label``).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from heartbeatai.results.schema import COMPLETED, EARLY_STOPPED, ERRORED, PENDING, RUNNING, TRIAL_STATUSES

STATUS_COLOURS = {COMPLETED: "#2e7d32", EARLY_STOPPED: "#f9a825", ERRORED: "#c62828", RUNNING: "#1565c0",
                  PENDING: "#b0bec5"}
METRIC_NAMES = {"f1": "F1", "auroc": "AUROC", "auprc": "AUPRC", "challenge_score": "challenge score"}
# Every figure's template, set once for the process: named in each figure's layout, plotly
# validated and deep-copied it per figure (25 ms each, a third of a view's drawing time);
# the default is attached as it is.
pio.templates.default = "plotly_white"
LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=50))
# Where an interval may not be read: cells and bars greyed, markers open.
UNRELIABLE_GREY = "#cfd8dc"


_MESSAGE_WIDTH = 55  # characters per line: fits a half-width graph at the page's 1400 px


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why it is empty (missing table, nothing selected)."""
    figure = go.Figure(layout=LAYOUT)
    # Plotly never wraps an annotation: a long reason in a half-width graph was cut off at both ends.
    lines = "<br>".join(textwrap.wrap(text, _MESSAGE_WIDTH)) or text
    figure.add_annotation(text=lines, showarrow=False, font=dict(size=15, color="#555"), x=0.5, y=0.5,
                          xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure.update_layout(height=260, meta={"message": text})


def rare_first(prevalence: pd.Series) -> list[str]:
    """Classes from the rarest to the most common, so the rare ones stand together."""
    return list(prevalence.sort_values(kind="stable").index)


def count_label(positives) -> str:
    """What stands in for an interval that may not be read: the number of test positives."""
    return f"{int(positives)} pos." if _finite(positives) else "? pos."


def is_reliable(flag) -> bool:
    """A missing flag (an older store, a row without a class count) is not a reliable interval."""
    return False if flag is None or pd.isna(flag) else bool(flag)


def interval_text(value, low, high, reliable, positives, fmt: str = "+.3f") -> str:
    """"+0.012 [-0.004, +0.027]", or "+0.012 (3 pos., no interval)" where it may not be read."""
    if not _finite(value):
        return "n/a"
    if is_reliable(reliable) and _finite(low) and _finite(high):
        return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
    return f"{value:{fmt}} ({count_label(positives)}, no interval)"


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# -- Studies ------------------------------------------------------------------------------

def progress_figure(progress: pd.DataFrame) -> go.Figure:
    if progress.empty:
        return message_figure("no trials yet")
    folds = progress["fold_id"].tolist()
    figure = go.Figure(layout=LAYOUT)
    for status in TRIAL_STATUSES:
        figure.add_bar(y=folds, x=progress[status], name=status.replace("_", " "), orientation="h",
                       marker_color=STATUS_COLOURS[status])
    return figure.update_layout(barmode="stack", title="Trials per fold", xaxis_title="trials",
                                height=120 + 28 * len(folds), yaxis=dict(autorange="reversed"))


def dataset_card_figure(card: pd.DataFrame) -> go.Figure:
    """Class prevalence per domain, rarest first and classes without a positive last.

    Prevalences span 0.1 % to 70 % and more: on a linear scale the commonest class takes the
    whole colour range and every rare class is white (issue 24), so the colour is log10 of the
    percentage, with ticks in %. A cell with no positive has no logarithm: it is left blank."""
    if card.empty:
        return message_figure("no dataset card")
    prevalence = card.pivot_table(index="class", columns="domain", values="prevalence", aggfunc="first")
    counts = card.pivot_table(index="class", columns="domain", values="count", aggfunc="first")
    counts = counts.reindex(index=prevalence.index, columns=prevalence.columns)
    # An empty class is no rarest class: it goes last, not first.
    empty = counts.fillna(0).sum(axis=1) == 0
    empty_classes = sorted(prevalence.index[empty])
    order = rare_first(prevalence[~empty].mean(axis=1)) + empty_classes
    prevalence, counts = prevalence.loc[order], counts.loc[order]
    percent = prevalence.to_numpy(float) * 100
    shown = np.log10(np.where(percent > 0, percent, np.nan))
    ticks = [0.01, 0.1, 1, 10, 100]
    figure = go.Figure(go.Heatmap(
        z=shown, x=list(prevalence.columns), y=order, customdata=np.dstack([counts.to_numpy(float), percent]),
        colorscale="Blues", colorbar=dict(title="% (log)", tickvals=np.log10(ticks).tolist(),
                                          ticktext=[f"{t:g}%" for t in ticks]), hoverongaps=False,
        hovertemplate="%{y} in %{x}: %{customdata[1]:.2f}% (%{customdata[0]} records)<extra></extra>",
    ), layout=LAYOUT)
    title = "Class prevalence per domain (log colour scale; rarest first"
    title += f"; {len(empty_classes)} class(es) without a positive last, blank)" if empty_classes else ")"
    return figure.update_layout(title=title, height=180 + 18 * len(order), yaxis=dict(autorange="reversed"),
                                meta={"empty_classes": empty_classes})
