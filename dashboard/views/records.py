"""The Records view: a test record the study explained, its labels, scores and gates, and how
well the fold's model does on the class explained (its positives beside any interval)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.dashboard import figures, figures_ecg
from heartbeatai.dashboard.views.base import ViewBase, per_store_state


class RecordView(NamedTuple):
    status: list
    labels: Any
    ecg: go.Figure
    probabilities: go.Figure
    gates: go.Figure


class RecordViews(ViewBase):
    @per_store_state
    def record_folds(self, study: str | None) -> tuple[list, str | None]:
        folds = sorted(self.store.read(study, "record_views", columns=["fold_id"])["fold_id"].unique())
        return [{"label": f, "value": f} for f in folds], (folds[0] if folds else None)

    @per_store_state
    def record_options(self, study: str | None, fold: str | None) -> tuple[list, str | None]:
        views = self.store.read(study, "record_views", filters={"fold_id": fold or ""},
                                columns=["record_id", "class", "misclassified", "rank"])
        views = views.sort_values(["misclassified", "rank"], ascending=[False, True], na_position="last")
        options = [{"label": f"{r['rank']}. {r['record_id']} · {r['class']}" + (" · misclassified" if r["misclassified"] else ""),
                    "value": f"{r['record_id']}|{r['class']}"} for r in views.to_dict("records")]
        return options, (options[0]["value"] if options else None)

    @per_store_state
    def record(self, study: str | None, fold: str | None, record: str | None, overlay: bool) -> RecordView:
        status = self.alerts(study, ("record_views",))
        if not fold or not record or "|" not in record:
            empty = figures.message_figure("no record views for this fold yet")
            return RecordView(status, None, empty, empty, empty)
        record_id, cls = record.split("|", 1)
        rows = self.store.read(study, "record_views", filters={"fold_id": fold, "record_id": record_id, "class": cls})
        if rows.empty:
            empty = figures.message_figure(f"record {record_id} has no view in {fold}")
            return RecordView(status, None, empty, empty, empty)
        row = rows.iloc[0]
        signal = np.asarray(json.loads(row["signal"]), dtype=float)
        attribution = np.asarray(json.loads(row["attribution"]), dtype=float) if overlay and pd.notna(row["attribution"]) else None
        if attribution is not None and attribution.shape != signal.shape:
            attribution = None
        true, pred = _json_list(row["true_labels"]), _json_list(row["pred_labels"])
        probabilities = json.loads(row["probabilities"]) if pd.notna(row["probabilities"]) else {}
        gates = json.loads(row["se_gates"]) if pd.notna(row["se_gates"]) else {}
        title = f"{record_id} ({fold}), explaining {cls}: 12 leads, mV against seconds"
        return RecordView(
            status=status,
            labels=html.Div([_label_badges(true, pred, cls), self._class_figures(study, row)]),
            ecg=figures_ecg.ecg_figure(signal, int(row["fs"]), attribution, title),
            probabilities=figures_ecg.probabilities_figure(probabilities, true, thresholds=self._thresholds(study, row)),
            gates=figures_ecg.se_gates_figure(gates),
        )

    def _thresholds(self, study: str, view: pd.Series) -> dict[str, float]:
        """The explaining model's per-class decision thresholds (tuned on validation, stored with
        its test class metrics): what a score must reach to be a call."""
        where = {name: view[name] for name in ("protocol", "fold_id", "arm", "seed", "selection", "trial_id")}
        rows = self.store.read(study, "class_metrics", filters={**where, "split": "test", "label_set": "noisy"})
        if rows.empty or "threshold" not in rows:
            return {}
        return {c: float(t) for c, t in zip(rows["class"], rows["threshold"]) if pd.notna(t)}

    def _class_figures(self, study: str, view: pd.Series) -> html.Div:
        """The explaining model's test figures for the class explained, or its positive count
        where there are too few positives for an interval."""
        where = {name: view[name] for name in ("protocol", "fold_id", "arm", "seed", "selection", "trial_id")}
        rows = self.store.read(study, "class_metrics", filters={**where, "split": "test", "label_set": "noisy",
                                                                "class": view["class"]})
        if rows.empty:
            return html.Div(f"No test figures for {view['class']} in {view['fold_id']}.", id="record-class-metrics",
                            className="small text-muted mt-1")
        row = rows.iloc[0]
        reliable, n = row["interval_reliable"], row["positives"]
        figures_text = ", ".join(f"{label} {figures.interval_text(row[m], row[f'{m}_lo'], row[f'{m}_hi'], reliable, n, '.3f')}"
                                 for m, label in (("f1", "F1"), ("auroc", "AUROC")))
        text = f"{view['class']} in {view['fold_id']} ({view['arm']}, seed {view['seed']}): {int(n)} test positives; {figures_text}"
        if not figures.is_reliable(reliable):
            text += "; fewer test positives than the study's minimum, so no interval"
        if figures.is_reliable(row["threshold_fallback"]):
            text += (f"; threshold {row['threshold']:.3f} fell back to calling the training prevalence positive "
                     "(no validation positive to tune it on)")
        return html.Div(text, id="record-class-metrics", className="small mt-1")


def _json_list(text) -> list[str]:
    return list(json.loads(text)) if isinstance(text, str) and text else []


def _label_badges(true: list[str], pred: list[str], explained: str) -> html.Div:
    def badge(label: str, truth: bool) -> dbc.Badge:
        hit = label in (pred if truth else true)
        colour = "success" if hit else ("danger" if truth else "warning")
        return dbc.Badge(label + (" ★" if label == explained else ""), color=colour, className="me-1")

    true_badges = [badge(c, True) for c in true] or [html.Span("none")]
    pred_badges = [badge(c, False) for c in pred] or [html.Span("none")]
    return html.Div([
        html.Span("True: ", className="fw-bold"), *true_badges,
        html.Span(" Predicted: ", className="fw-bold ms-3"), *pred_badges,
        html.Span(" (green: agreed; red: missed; amber: false alarm; ★ the class explained)",
                  className="text-muted small ms-2"),
    ], id="record-label-badges")
