"""Figures of the Degradation view: what leaving a domain out costs each class (docs/analysis.md).

The split is in F1 units: for held-out domain d, the LODO model's F1 minus the reference's
on the same records of d (total) = prevalence + threshold + ranking, exactly. The AUROC
change is drawn beside it, never inside it: it is the threshold-free ranking change, in
AUROC units. Classes are ordered by training prevalence, rarest first, in every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from heartbeatai.dashboard.figures import (LAYOUT, UNRELIABLE_GREY, count_label, interval_text, is_reliable,
                                           message_figure, rare_first)
from heartbeatai.results.schema import DEGRADATION_PARTS, PREVALENCE_ESTIMATORS, REFERENCE_KINDS

PART_NAMES = {part: f"{part} ({meaning})" for part, meaning in DEGRADATION_PARTS.items()}
PART_COLOURS = {"prevalence": "#8e24aa", "threshold": "#fb8c00", "ranking": "#1e88e5"}
F1_UNITS = "F1 change, LODO − reference (F1 units)"
RANKING_CHANGE = "threshold-free ranking change (AUROC)"
CONDITIONAL = "conditional on these trained models"
ESTIMATES = "label-free prevalence estimates (what a deployer could recover without labels; not used in the split)"
FAR = "far from the truth"
NO_SPLIT = "no degradation figures: the analysis has not split any class yet"


def reference_name(kind) -> str:
    return REFERENCE_KINDS.get(kind, "reference unknown") if isinstance(kind, str) else "reference unknown"


def class_order(rows: pd.DataFrame) -> list[str]:
    """Rarest first, by the LODO model's training prevalence averaged over held-out domains."""
    if rows.empty:
        return []
    return rare_first(rows.groupby("class")["train_prevalence_lodo"].mean())


def _reliable(rows: pd.DataFrame) -> np.ndarray:
    return np.array([is_reliable(flag) for flag in rows["interval_reliable"]], dtype=bool)


def total_heatmap(rows: pd.DataFrame) -> go.Figure:
    """Class x held-out domain of the total F1 change. A cell whose interval may not be read is
    greyed and shows its positive count instead of a colour."""
    if rows.empty:
        return message_figure(NO_SPLIT)
    order, domains = class_order(rows), sorted(rows["domain"].unique())
    cells = rows.set_index(["class", "domain"]).reindex(pd.MultiIndex.from_product([order, domains]))
    shape = (len(order), len(domains))
    total = cells["total"].to_numpy(float).reshape(shape)
    reliable = _reliable(cells).reshape(shape)
    flagged = ~reliable & np.isfinite(total)
    details = np.array([_cell_hover(row) for row in cells.reset_index(drop=True).to_dict("records")],
                       dtype=object).reshape(shape)
    shown = np.where(reliable, total, np.nan)
    bound = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
    figure = go.Figure(layout=LAYOUT)
    figure.add_heatmap(
        z=shown, x=domains, y=order, customdata=details, colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
        colorbar=dict(title="Δ F1"), name="total F1 change", hoverongaps=False,
        hovertemplate="<b>%{y}</b>, held out %{x}<br>%{customdata}<extra></extra>",
    )
    counts = cells["n_positives"].to_numpy(float).reshape(shape)
    figure.add_heatmap(
        z=np.where(flagged, 1.0, np.nan), x=domains, y=order, customdata=details, showscale=False,
        colorscale=[[0, UNRELIABLE_GREY], [1, UNRELIABLE_GREY]], hoverongaps=False,
        name="fewer positives than the study's minimum: count shown",
        text=np.where(flagged, np.vectorize(count_label)(counts), ""), texttemplate="%{text}",
        textfont=dict(size=10, color="#37474f"), hovertemplate="<b>%{y}</b>, held out %{x}<br>%{customdata}<extra></extra>",
    )
    return figure.update_layout(
        title="Total F1 change, LODO − reference, per class and held-out domain "
              "(F1 units; rarest classes at the top; grey: too few positives for an interval)",
        xaxis_title="held-out domain", height=200 + 20 * len(order), yaxis=dict(autorange="reversed"),
        meta={"unreliable_cells": int(flagged.sum())},
    )


def _cell_hover(row: dict) -> str:
    if not np.isfinite(row.get("total", np.nan)):
        return "not split (absent from the shared records)"
    return (f"{reference_name(row['reference_kind'])}, {int(row['n_records'])} shared records, "
            f"{count_label(row['n_positives'])}<br>"
            f"F1 {row['f1_reference']:.3f} (reference) → {row['f1_lodo']:.3f} (LODO)<br>"
            f"total {interval_text(row['total'], row['total_lo'], row['total_hi'], row['interval_reliable'], row['n_positives'])}"
            f" F1 ({CONDITIONAL})<br>prevalence {row['prevalence']:+.3f}, threshold {row['threshold']:+.3f}, "
            f"ranking {row['ranking']:+.3f}<br>{RANKING_CHANGE}: {row['auroc_change']:+.3f}"
            + "".join(f"<br>{name} of the LODO model's prevalence: {FAR}"
                      for estimator, name in PREVALENCE_ESTIMATORS.items() if _is_true(row.get(f"{estimator}_far_lodo"))))


def _is_true(flag) -> bool:
    return flag is not None and not pd.isna(flag) and bool(flag)


def _classes_of(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    present = set(rows["class"])
    return rows.set_index("class").reindex([c for c in order if c in present])


def _ticks(classes: pd.DataFrame) -> dict:
    """Classes down the y axis, rarest at the top as in the heatmap, each with its positives."""
    labels = [f"{c} ({count_label(n)})" for c, n in zip(classes.index, classes["n_positives"])]
    return dict(type="category", categoryorder="array", categoryarray=list(classes.index), autorange="reversed",
                tickmode="array", tickvals=list(classes.index), ticktext=labels)


def _height(classes: pd.DataFrame) -> int:
    return 200 + 22 * len(classes)


def parts_figure(rows: pd.DataFrame, order: list[str], domain: str, chosen: str | None = None) -> go.Figure:
    """One held-out domain: per class the three parts stacked, the total as a marker. A class whose
    intervals may not be read gets hatched bars and an open marker with its count, no error bar."""
    classes = _classes_of(rows, order)
    if classes.empty:
        return message_figure(f"no degradation split for held-out {domain}")
    reliable = _reliable(classes)
    names = list(classes.index)
    figure = go.Figure(layout=LAYOUT)
    for part in DEGRADATION_PARTS:
        hover = [f"{c}: {part} part {interval_text(v, lo, hi, ok, n)} F1" for c, v, lo, hi, ok, n in zip(
            names, classes[part], classes[f"{part}_lo"], classes[f"{part}_hi"], reliable, classes["n_positives"])]
        figure.add_bar(y=names, x=classes[part], name=PART_NAMES[part], customdata=hover, orientation="h",
                       marker=dict(color=PART_COLOURS[part], pattern=dict(shape=["" if ok else "/" for ok in reliable])),
                       hovertemplate="%{customdata}<extra></extra>")
    _add_markers(figure, classes, "total", reliable, "total")
    if chosen in names:
        figure.add_hrect(y0=names.index(chosen) - 0.5, y1=names.index(chosen) + 0.5, fillcolor="#fff59d",
                         opacity=0.5, layer="below", line_width=0)
    figure.add_vline(x=0, line=dict(color="#888", width=1))
    return figure.update_layout(
        barmode="relative", height=_height(classes), yaxis=_ticks(classes), xaxis_title=F1_UNITS,
        title=(f"Held out {domain}: the F1 change and its parts<br><sub>{reference_name(classes['reference_kind'].iloc[0])}, "
               f"{int(classes['n_records'].iloc[0]):,} shared records; intervals {CONDITIONAL}; hatched: too few "
               "positives for an interval</sub>"),
        legend=dict(orientation="h", y=-120 / _height(classes), yanchor="top"), margin=dict(l=110, r=20, t=70, b=150),
    )


def auroc_change_figure(rows: pd.DataFrame, order: list[str], domain: str) -> go.Figure:
    """Beside the split, not in it: the AUROC change, which no threshold or prior moves."""
    classes = _classes_of(rows, order)
    if classes.empty:
        return message_figure(f"no {RANKING_CHANGE} for held-out {domain}")
    figure = go.Figure(layout=LAYOUT)
    _add_markers(figure, classes, "auroc_change", _reliable(classes), "AUROC change")
    figure.add_vline(x=0, line=dict(color="#888", dash="dot"))
    return figure.update_layout(
        title=f"Held out {domain}: {RANKING_CHANGE}<br><sub>beside the split, not part of it; intervals {CONDITIONAL}</sub>",
        height=_height(classes), yaxis=_ticks(classes),
        xaxis_title="AUROC change, LODO − reference (AUROC units)",
        legend=dict(orientation="h", y=-120 / _height(classes), yanchor="top"), margin=dict(l=110, r=20, t=70, b=150),
    )


def _add_markers(figure: go.Figure, classes: pd.DataFrame, column: str, reliable: np.ndarray, label: str) -> None:
    sure, unsure = classes[reliable], classes[~reliable]
    if len(sure):
        figure.add_scatter(
            y=list(sure.index), x=sure[column], mode="markers", name=f"{label} (95% interval)",
            marker=dict(symbol="diamond", size=10, color="#212121"),
            error_x=dict(type="data", symmetric=False, array=sure[f"{column}_hi"] - sure[column],
                         arrayminus=sure[column] - sure[f"{column}_lo"], color="#212121"),
            hovertemplate="%{y}: " + label + " %{x:+.3f}<extra></extra>",
        )
    if len(unsure):
        counts = [count_label(n) for n in unsure["n_positives"]]
        figure.add_scatter(
            y=list(unsure.index), x=unsure[column], mode="markers+text", text=counts, textposition="middle right",
            name=f"{label}, too few positives: count shown, no interval",
            marker=dict(symbol="diamond-open", size=10, color="#546e7a"), textfont=dict(size=10, color="#546e7a"),
            hovertemplate="%{y}: " + label + " %{x:+.3f} from %{text}, below the study's minimum: "
                          "no interval<extra></extra>",
        )
