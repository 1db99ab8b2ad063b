"""The Degradation view: the F1 change of leaving a domain out, per class, and its parts.

The heatmap gives every class x held-out domain at once; the chosen domain's classes are
drawn with the three parts stacked against the total (F1 units) and the AUROC change
beside them; the chosen class's numbers are spelled out, intervals only where the
analysis marks them reliable and labelled conditional on the trained models. The
label-free prevalence estimates (EM, BBSE) are their own line beside the true prevalence,
marked where they are far from it: what a deployer could recover, not part of the split.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dash_bootstrap_components as dbc
import pandas as pd
import plotly.graph_objects as go
from dash import html

from heartbeatai.dashboard import figures, figures_degradation as fd
from heartbeatai.dashboard.views.base import ViewBase, options, per_store_state, unfinished
from heartbeatai.protocols import INTRA, LODO, REFERENCE
from heartbeatai.results.schema import DEGRADATION_PARTS, PREVALENCE_ESTIMATORS


class DegradationView(NamedTuple):
    status: list
    heatmap: go.Figure
    reference: Any
    class_options: list
    domain_options: list


class DecompositionView(NamedTuple):
    parts: go.Figure
    auroc_change: go.Figure
    detail: Any


class DegradationViews(ViewBase):
    def _degradation_rows(self, study: str, label_set: str) -> pd.DataFrame:
        return _split_classes(self.store.read(study, "degradation", filters={"label_set": label_set}))

    @per_store_state
    def degradation(self, study: str | None, label_set: str) -> DegradationView:
        rows = self._degradation_rows(study, label_set)
        contrast = self.store.read(study, "rarity_contrast", filters={"label_set": label_set}) if study else None
        unpaired = self._no_reference(study) if rows.empty else None
        if unpaired:
            # "not written yet" would send the user waiting for a table the analysis will never fill.
            status = [*self.alerts(study, ()), dbc.Alert(unpaired, color="warning", className="py-2 no-reference-alert")]
        else:
            status = self.alerts(study, ("degradation", "rarity_contrast"))
        return DegradationView(
            status=status,
            heatmap=figures.message_figure(unpaired) if unpaired else fd.total_heatmap(rows),
            reference=_reference_note(rows, contrast),
            class_options=options(fd.class_order(rows)),
            domain_options=options(sorted(rows["domain"].unique())),
        )

    def _no_reference(self, study: str) -> str | None:
        """Why a finished study has no degradation split: none of its folds is a reference that
        LODO can be paired with (analysis/degradation.py pairs lodo:<d> with reference:<d>:<i>,
        else intra:<d>:<i>). None while the study runs or where it has such folds."""
        ran = set(self.store.read(study, "trials", columns=["protocol"])["protocol"].dropna())
        if unfinished(self.store.progress(study)) or LODO not in ran or ran & {REFERENCE, INTRA}:
            return None
        return (f"No degradation split: this study's protocols ({', '.join(sorted(ran))}) have no `{REFERENCE}` or "
                f"`{INTRA}` folds to pair LODO's model with on the same held-out records, so there is no reference "
                f"to compare against. To get one, add `{REFERENCE}` to `protocols:` in the study config (e.g. "
                f"`protocols: [{LODO}, {REFERENCE}]`: a model trained on every domain at LODO's size, tested on "
                f"each held-out domain; `{INTRA}`, within-domain folds, also serves), run the study, then "
                "`heartbeatai study analyse`.")

    @per_store_state
    def decomposition(self, study: str | None, label_set: str, cls: str | None,
                      domain: str | None) -> DecompositionView:
        """The chosen held-out domain (the first when none is chosen) and class (its rarest with a
        reliable interval: a class with 1 test positive would open the view on a split that
        cannot be read; the rarest of all where none has one)."""
        rows = self._degradation_rows(study, label_set)
        if rows.empty:
            empty = figures.message_figure(fd.NO_SPLIT)
            return DecompositionView(empty, empty, None)
        domains = sorted(rows["domain"].unique())
        domain = domain if domain in domains else domains[0]
        order = fd.class_order(rows)
        shown = rows[rows["domain"] == domain]
        present = [c for c in order if c in set(shown["class"])]
        readable = set(shown.loc[shown["interval_reliable"].fillna(False).astype(bool), "class"]) \
            if "interval_reliable" in shown else set()
        cls = cls if cls in present else next((c for c in present if c in readable), present[0])
        return DecompositionView(
            parts=fd.parts_figure(shown, order, domain, cls),
            auroc_change=fd.auroc_change_figure(shown, order, domain),
            detail=_class_detail(shown[shown["class"] == cls].iloc[0]),
        )

    @staticmethod
    def picked_cell(click_data: dict | None) -> tuple[str | None, str | None]:
        """A heatmap click picks the class (y) and held-out domain (x) to decompose."""
        if not click_data or not click_data.get("points"):
            return None, None
        point = click_data["points"][0]
        return point.get("y"), point.get("x")


def _split_classes(rows: pd.DataFrame) -> pd.DataFrame:
    """Drop classes with no split in any domain (an older store's rows, a class never present),
    which would otherwise sort as the rarest and push the evaluated rare classes out of sight."""
    if rows.empty:
        return rows
    has_split = rows["total"].notna().groupby(rows["class"]).transform("any")
    return rows[has_split]


def _contrast_line(contrast: pd.DataFrame | None) -> html.P | None:
    """The rare-against-common contrast (analysis/rarity_contrast.py), when the analysis has one."""
    if contrast is None or contrast.empty:
        return None
    r = contrast.iloc[0]
    if pd.isna(r.get("contrast")):
        return html.P(f"Rare against common: fewer than 3 class x domain cells with at least "
                      f"{int(r['min_positives'])} test positives, so no thirds to compare.",
                      id="degradation-rarity-contrast", className="small mb-1")
    verdict = ("worse on rare classes" if r["contrast_lo"] > 0 else
               "better on rare classes" if r["contrast_hi"] < 0 else "no rare-class difference shown")
    if pd.isna(r.get("contrast_lo")):
        difference = (f"difference {r['contrast']:+.3f}, no interval (a third with a single class leaves no "
                      "spread between classes to estimate one)")
    else:
        difference = (f"difference {r['contrast']:+.3f}, 95% interval [{r['contrast_lo']:+.3f}, "
                      f"{r['contrast_hi']:+.3f}] ({verdict})")
    slope = r.get("slope")
    trend = ("" if slope is None or pd.isna(slope) else
             f" Over all of them, the drop grows by {slope:+.3f} per tenfold lower training prevalence"
             + ("" if pd.isna(r.get("slope_lo")) else f" [{r['slope_lo']:+.3f}, {r['slope_hi']:+.3f}]") + ".")
    classes = r.get("n_classes")
    over = "" if classes is None or pd.isna(classes) else f" of {int(classes)} classes"
    return html.P([html.B("Rare against common: "),
                   f"over {int(r['n_cells'])} class x domain cells{over} with at least {int(r['min_positives'])} test "
                   f"positives, the F1 drop (reference minus LODO) is {r['drop_rare']:+.3f} on the rarest third "
                   f"(training prevalence up to {r['rare_prevalence_max']:.1%}) and {r['drop_common']:+.3f} on the "
                   f"commonest third (from {r['common_prevalence_min']:.1%}): {difference}.{trend} These intervals "
                   "are over classes (a delete-one-class jackknife), so the variation between cells and between "
                   f"seeds is in them. Macro-F1 over those cells: reference {r['f1_reference_macro']:.3f}, LODO "
                   f"{r['f1_lodo_macro']:.3f}."],
                  id="degradation-rarity-contrast", className="small mb-1")


def _reference_note(rows: pd.DataFrame, contrast: pd.DataFrame | None = None) -> html.Div:
    """Which reference each held-out domain was paired with, on how many shared records."""
    if rows.empty:
        return html.Div(id="degradation-reference-note")
    per_domain = rows.groupby("domain").agg(kind=("reference_kind", "first"), records=("n_records", "max"),
                                           seeds=("n_seeds", "max"))
    items = [html.Li(f"held out {domain}: {fd.reference_name(row.kind)}, {_count(row.records)} shared records"
                     + (f", {_count(row.seeds)} seeds averaged" if pd.notna(row.seeds) else ""))
             for domain, row in per_domain.iterrows()]
    return html.Div([
        html.P(["Each model is scored on the same records of the held-out domain: the LODO model against a "
                "reference that saw that domain in training. The parts are in F1 units and add up to the total: ",
                html.I("prevalence"), " (what correcting each model's probabilities to the true test prevalence "
                "changes at its deployed threshold: the prior shift's own cost), ", html.I("threshold"), " (from "
                "there to each model's best threshold on the test records: an upper bound, it uses labels) and ",
                html.I("ranking"), " (F1 at the best thresholds). Where a class has fewer test positives than the "
                "study's minimum, its count is shown and no interval is drawn."], className="small mb-1"),
        html.P([html.B(fd.CONDITIONAL), ": each interval resamples the shared records with the trained models "
                "fixed, so the variation from one training seed to the next is not in it."],
               id="degradation-conditional", className="small mb-1"),
        html.Ul(items, className="small mb-2"),
        _contrast_line(contrast),
    ], id="degradation-reference-note")


def _count(value) -> str:
    return f"{int(value):,}" if pd.notna(value) else "?"


def _class_detail(row: pd.Series) -> html.Div:
    reliable, n = row["interval_reliable"], row["n_positives"]

    def interval(part: str) -> str:
        return figures.interval_text(row[part], row[f"{part}_lo"], row[f"{part}_hi"], reliable, n)

    header = (f"{row['class']} held out on {row['domain']}: {fd.reference_name(row['reference_kind'])}, "
              f"{_count(row['n_records'])} shared records, {_count(n)} positives")
    lines = [
        f"F1 {row['f1_reference']:.3f} (reference) → {row['f1_lodo']:.3f} (LODO): total {interval('total')}",
        "= " + " + ".join(f"{part} {interval(part)}" for part in DEGRADATION_PARTS) + " (F1 units)",
        f"{fd.RANKING_CHANGE}: AUROC {row['auroc_reference']:.3f} → {row['auroc_lodo']:.3f}, "
        f"change {interval('auroc_change')}",
        f"test prevalence {row['test_prevalence']:.2%}; training prevalence {row['train_prevalence_lodo']:.2%} (LODO), "
        f"{row['train_prevalence_reference']:.2%} (reference)",
        f"calibration error on the test records {row['test_calibration_error_lodo']:.3f} (LODO), "
        f"{row['test_calibration_error_reference']:.3f} (reference)",
        f"intervals {fd.CONDITIONAL}",
    ]
    if not figures.is_reliable(reliable):
        lines.append(f"{figures.count_label(n)}: fewer test positives than the study's minimum, so no interval "
                     "is given; read the figures as counts of a handful of records.")
    return html.Div([html.H6(header), *[html.Div(line, className="small") for line in lines], _estimates(row)],
                    id="degradation-class-detail", className="border rounded p-2 mt-2")


def _estimates(row: pd.Series) -> html.Div:
    """The label-free prevalence estimates beside the truth, each marked where it is far from it."""
    def estimate(estimator: str, side: str) -> list:
        value, far = row.get(f"{estimator}_prevalence_{side}"), row.get(f"{estimator}_far_{side}")
        who = "LODO" if side == "lodo" else side
        shown = f"{value:.2%} ({who})" if pd.notna(value) else f"undefined ({who})"
        if pd.notna(far) and bool(far):
            return [shown, " ", html.Span(fd.FAR, className="badge bg-warning text-dark estimate-far")]
        return [shown]

    parts: list = [html.B(f"{fd.ESTIMATES}: "), f"true test prevalence {row['test_prevalence']:.2%}"]
    for estimator, name in PREVALENCE_ESTIMATORS.items():
        parts += [f"; {name} "] + estimate(estimator, "lodo") + [", "] + estimate(estimator, "reference")
    return html.Div(parts, id="degradation-estimates", className="small mt-1")
