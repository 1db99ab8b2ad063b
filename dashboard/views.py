"""What each view shows, as plain functions of the results store and the filters.

``Views(store)`` answers every callback of the page: reads through the store (cached by
the parts' mtimes), builds figures with the figure modules, and returns the values of the
callback's outputs in order. Nothing here knows Dash's request machinery, so every view
is tested by calling it. Problems of the data (a study still running, a table not written
yet, a damaged part) come back as alerts in the view's status, never as exceptions.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import dash_table, html

from heartbeatai.dashboard import figures, figures_ecg, figures_sweeps
from heartbeatai.results import ResultsStore, schema
from heartbeatai.results.summary import COLUMNS as SUMMARY_COLUMNS
from heartbeatai.results.summary import row as summary_row

# Rare, for the per-class ablation effects: below 2 % of the training set (at most 12 classes).
RARE_PREVALENCE = 0.02
MAX_RARE = 12
ALL_SEEDS = "all"
WARM_STUDIES = 3  # studies whose sweep figures are built ahead of the first visit
# The columns whose change redraws a fold's sweep figures.
_SWEEP_STATE = {"trials": ["trial_id", "status", "selection_value"], "epochs": ["trial_id", "epoch"],
                "importances": ["param", "importance"]}


class ViewInputError(ValueError):
    """A request the page cannot answer as asked (no such study, a name that could leave the root)."""


class StudiesView(NamedTuple):
    status: list
    studies_table: Any
    progress: go.Figure
    card: go.Figure
    card_table: Any


class DegradationView(NamedTuple):
    status: list
    heatmap: go.Figure
    scatter: go.Figure
    class_options: list
    domain_options: list


class AblationsView(NamedTuple):
    status: list
    arms: go.Figure
    tests: Any
    rare_effects: go.Figure


class SweepsView(NamedTuple):
    status: list
    parallel: go.Figure
    importances: go.Figure
    curves: go.Figure
    slices: go.Figure


class RecordView(NamedTuple):
    status: list
    labels: Any
    ecg: go.Figure
    probabilities: go.Figure
    gates: go.Figure


def _per_store_state(view: Callable) -> Callable:
    """Answer a view from cache while none of the study's tables changed: a refresh that finds
    a new part rebuilds, a filter flipped back and forth does not."""
    @functools.wraps(view)
    def cached(self: "Views", study: str | None, *args):
        study = self.study(study)
        key = (view.__name__, study, json.dumps(args, default=str), self.store.signature(study))
        return self._cached(key, lambda: view(self, study, *args))

    return cached


def _options(values) -> list[dict]:
    return [{"label": str(v), "value": v} for v in values]


def _table(frame: pd.DataFrame, table_id: str) -> dbc.Table:
    return dbc.Table.from_dataframe(frame, striped=True, bordered=False, hover=True, size="sm", id=table_id)


STUDIES_PAGE_SIZE = 20


def _paged_table(frame: pd.DataFrame, table_id: str) -> dash_table.DataTable:
    """A long table drawn a page at a time in the browser (a root may hold thousands of
    studies): sortable and filterable there, with every row sent once as plain records."""
    return dash_table.DataTable(
        id=table_id, data=frame.to_dict("records"), columns=[{"name": c, "id": c} for c in frame.columns],
        page_size=STUDIES_PAGE_SIZE, page_action="native", sort_action="native", filter_action="native",
        style_as_list_view=True, style_cell={"fontSize": "0.85rem", "textAlign": "left", "padding": "2px 8px"},
        style_header={"fontWeight": "bold"},
    )


class Views:
    def __init__(self, store: ResultsStore):
        self.store = store
        self._figures: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # -- shared -------------------------------------------------------------------------

    def study(self, study: str | None) -> str:
        """The study, checked: a valid name of a study under the root (else a one-line error)."""
        if not study:
            raise ViewInputError("no study selected: the results root holds none yet")
        try:
            schema.check_study_name(study)
        except ValueError as err:
            raise ViewInputError(str(err)) from None
        if not self.store.has_study(study):  # one lookup, not a listing of thousands of studies
            raise ViewInputError(f"no study named {study!r} under the results root")
        return study

    def alerts(self, study: str, tables: tuple[str, ...]) -> list:
        """How far the tables behind a view can be trusted, said on the page."""
        shown = []
        active = _unfinished(self.store.progress(study))
        if active:
            shown.append(dbc.Alert(f"Study in progress: {active} trials running or pending; figures follow as "
                                   "results arrive.", color="info", className="py-2"))
        for name in tables:
            status = self.store.status(study, name)
            if status.state == "corrupt":
                shown.append(dbc.Alert([html.B(f"{name}: {len(status.corrupt)} unreadable part(s) skipped. "),
                                        "; ".join(status.corrupt)], color="danger", className="py-2 corrupt-alert"))
            elif status.state == "missing":
                shown.append(dbc.Alert(f"{name}: not written yet (the study has not reached this stage).",
                                       color="warning", className="py-2 missing-alert"))
        return shown

    def forget(self) -> None:
        """Drop every cached view (the reader's cache of tables stays)."""
        with self._lock:
            self._figures.clear()

    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._figures:
                return self._figures[key]
        built = build()
        with self._lock:
            if len(self._figures) > 256:
                self._figures.clear()
            self._figures[key] = built
        return built

    # -- page chrome --------------------------------------------------------------------

    def refresh(self, study: str | None, signature: str | None) -> tuple[list, str | None, str | None, Any]:
        """Study choices, the study to show, and the signature of its tables (unchanged: no re-render)."""
        studies = self.store.studies()
        if study not in studies:
            study = studies[0] if studies else None
        if study is None:
            return [], None, None, dbc.Badge("no studies", color="secondary")
        current = self.store.signature(study)
        active = _unfinished(self.store.progress(study))
        badge = (dbc.Badge(f"live: {active} trials running or queued", color="info") if active
                 else dbc.Badge("finished", color="success"))
        return _options(studies), study, (current if current != signature else None), badge

    @_per_store_state
    def filter_options(self, study: str | None) -> tuple[list, list]:
        """Arms and seeds the study has (arm `search` is the sweep, not an arm)."""
        runs = self.store.read(study, "trials", columns=["arm", "seed"])
        arms = [a for a in _arm_order(runs["arm"].unique()) if a != schema.SEARCH_ARM]
        seeds = sorted(int(s) for s in runs.loc[runs["arm"] != schema.SEARCH_ARM, "seed"].unique())
        return _options(arms), [{"label": "all seeds", "value": ALL_SEEDS}, *_options(seeds)]

    # -- Studies ------------------------------------------------------------------------

    def studies(self, study: str | None) -> StudiesView:
        """The list of every study from the per-study summaries (results/summary.py): one
        small file each, so thousands of studies list in about a second; only the chosen
        study's own tables are read."""
        study = self.study(study)
        summaries = self.store.summaries()
        key = ("studies", study, self.store.signature(study), tuple(s["trials_key"] + s["written_at"] for s in summaries))
        return self._cached(key, lambda: self._studies(study, summaries))

    def _studies(self, study: str, summaries: list[dict]) -> StudiesView:
        rows = pd.DataFrame([summary_row(s) for s in summaries], columns=list(SUMMARY_COLUMNS))
        card = self.store.read(study, "dataset_card")
        per_domain = (card.groupby("domain", as_index=False)
                      .agg(records=("n_records", "first"), patients=("n_patients", "first"), fs=("fs", "first"),
                           median_seconds=("median_seconds", "first")) if not card.empty else card)
        tables = self.store.inventory(study)
        return StudiesView(
            status=self.alerts(study, ("trials", "dataset_card")),
            studies_table=_paged_table(rows, "studies-list"),
            progress=figures.progress_figure(self.store.progress(study)),
            card=figures.dataset_card_figure(card),
            card_table=html.Div([
                _table(per_domain, "card-domains") if not per_domain.empty else None,
                html.H6(f"Tables of {study}", className="mt-3"),
                _table(tables, "study-tables"),
            ]),
        )

    # -- Degradation --------------------------------------------------------------------

    @_per_store_state
    def degradation(self, study: str | None, metric: str, label_set: str) -> DegradationView:
        rows = _evaluated_classes(
            self.store.read(study, "degradation", filters={"metric": metric, "label_set": label_set}))
        order = figures.rare_first(rows.groupby("class")["train_prevalence"].mean()) if not rows.empty else []
        return DegradationView(
            status=self.alerts(study, ("degradation",)),
            heatmap=figures.degradation_heatmap(rows, metric),
            scatter=figures.degradation_scatter(rows, metric),
            class_options=_options(order),
            domain_options=_options(sorted(rows["domain"].unique())),
        )

    @_per_store_state
    def decomposition(self, study: str | None, metric: str, label_set: str, cls: str | None,
                      domain: str | None) -> go.Figure:
        # The split is defined for the F1 drop (study/degradation.py), whatever metric the
        # heatmap shows; `metric` stays in the signature so the cache follows the filters.
        if not cls or not domain:
            return figures.decomposition_figure(None)
        rows = self.store.read(study, "degradation", filters={"metric": "f1", "label_set": label_set,
                                                              "class": cls, "domain": domain})
        return figures.decomposition_figure(rows.iloc[0] if len(rows) else None)

    @staticmethod
    def picked_cell(click_data: dict | None) -> tuple[str | None, str | None]:
        """A heatmap click picks the class (y) and held-out domain (x) to decompose."""
        if not click_data or not click_data.get("points"):
            return None, None
        point = click_data["points"][0]
        return point.get("y"), point.get("x")

    # -- Ablations ----------------------------------------------------------------------

    @_per_store_state
    def ablations(self, study: str | None, protocol: str, arms: list[str] | None, seed, metric: str) -> AblationsView:
        fold_metric = f"macro_{metric}"
        results = self.store.read(study, "fold_metrics", filters={
            "protocol": protocol, "split": "test", "label_set": "noisy", "metric": fold_metric, "selection": "val"})
        classes = self.store.read(study, "class_metrics", filters={
            "protocol": protocol, "split": "test", "label_set": "noisy", "selection": "val"})
        if seed not in (None, ALL_SEEDS):
            # The prevalence floor has one seed: keep it beside any seed.
            results = results[(results["seed"] == int(seed)) | (results["arm"] == schema.PREVALENCE_ARM)]
            classes = classes[classes["seed"] == int(seed)]
        chosen = _arm_order(arms or results["arm"].unique())
        results, classes = results[results["arm"].isin(chosen)], classes[classes["arm"].isin(chosen + ["full"])]
        tests = self.store.read(study, "ablation_tests", filters={"protocol": protocol, "metric": fold_metric})
        tests = tests[tests["arm"].isin(chosen)] if arms else tests
        shown = figures.ablation_tests_frame(tests)
        return AblationsView(
            status=self.alerts(study, ("fold_metrics", "class_metrics", "ablation_tests")),
            arms=figures.ablation_figure(results, chosen, fold_metric),
            tests=_table(shown, "ablation-tests-table") if not shown.empty else html.P(
                f"No paired tests for {fold_metric} under {protocol} yet.", className="text-muted"),
            rare_effects=figures.rare_class_effects_figure(
                classes[classes["arm"] != schema.PREVALENCE_ARM], metric, _rare_classes(classes)),
        )

    # -- Sweeps -------------------------------------------------------------------------

    @_per_store_state
    def sweep_folds(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        folds = sorted(self.store.read(study, "trials", columns=["fold_id"], filters={
            "protocol": protocol, "arm": schema.SEARCH_ARM})["fold_id"].unique())
        return _options(folds), (folds[0] if folds else None)

    def sweeps(self, study: str | None, protocol: str, fold: str | None) -> SweepsView:
        study = self.study(study)
        status = self.alerts(study, ("trials", "epochs", "importances"))
        if not fold:
            empty = figures.message_figure(f"no search trials under {protocol} yet")
            return SweepsView(status, empty, empty, empty, empty)
        where = {"protocol": protocol, "fold_id": fold}
        # Keyed on this fold's rows, not the study's files: while another fold searches, this
        # fold's Optuna plots (seconds to build) stay as they are.
        search = {**where, "arm": schema.SEARCH_ARM}
        key = ("sweeps", study, protocol, fold, *(
            _digest(self.store.read(study, name, columns=columns, filters=where if name == "importances" else search))
            for name, columns in _SWEEP_STATE.items()))
        return SweepsView(status, *self._cached(key, lambda: self._sweep_figures(study, where)))

    def _sweep_figures(self, study: str, where: dict) -> tuple[go.Figure, ...]:
        trials = self.store.read(study, "trials", filters={**where, "arm": schema.SEARCH_ARM})
        epochs = self.store.read(study, "epochs", filters={**where, "arm": schema.SEARCH_ARM})
        importances = self.store.read(study, "importances", filters=where)
        metric = trials["selection_metric"].dropna().iloc[0] if trials["selection_metric"].notna().any() else "val_macro_auroc"
        optuna_study = figures_sweeps.optuna_study(trials, figures_sweeps.direction_of(metric))
        curve_metric = metric if metric in epochs.columns else "val_macro_auroc"
        return (figures_sweeps.parallel_coordinates_figure(optuna_study, metric),
                figures_sweeps.importances_figure(importances),
                figures_sweeps.learning_curves_figure(epochs, trials, curve_metric),
                figures_sweeps.slice_figure(optuna_study, importances, metric))

    def warm(self) -> None:
        """Build the sweep figures of every fold ahead of the first visit (Optuna's plots are slow),
        for the first studies the page opens on (not all of a root of thousands)."""
        for study in self.store.studies()[:WARM_STUDIES]:
            for protocol in schema.PROTOCOLS:
                for option in self.sweep_folds(study, protocol)[0]:
                    self.sweeps(study, protocol, option["value"])

    # -- Records ------------------------------------------------------------------------

    @_per_store_state
    def record_folds(self, study: str | None) -> tuple[list, str | None]:
        folds = sorted(self.store.read(study, "record_views", columns=["fold_id"])["fold_id"].unique())
        return _options(folds), (folds[0] if folds else None)

    @_per_store_state
    def record_options(self, study: str | None, fold: str | None) -> tuple[list, str | None]:
        views = self.store.read(study, "record_views", filters={"fold_id": fold or ""},
                                columns=["record_id", "class", "misclassified", "rank"])
        views = views.sort_values(["misclassified", "rank"], ascending=[False, True], na_position="last")
        options = [{"label": f"{r['rank']}. {r['record_id']} · {r['class']}" + (" · misclassified" if r["misclassified"] else ""),
                    "value": f"{r['record_id']}|{r['class']}"} for r in views.to_dict("records")]
        return options, (options[0]["value"] if options else None)

    @_per_store_state
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
            labels=_label_badges(true, pred, cls),
            ecg=figures_ecg.ecg_figure(signal, int(row["fs"]), attribution, title),
            probabilities=figures_ecg.probabilities_figure(probabilities, true),
            gates=figures_ecg.se_gates_figure(gates),
        )

    # -- Export -------------------------------------------------------------------------

    @_per_store_state
    def export_options(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        best = self.store.read(study, "best_configs", filters={"protocol": protocol})
        best = best.assign(first=best["fold_id"] != schema.CONSENSUS_FOLD).sort_values(["first", "fold_id", "selection"])
        options = [{"label": f"{r['fold_id']} ({r['selection']} selection, {r['metric']} = {r['value']:.4f})",
                    "value": f"{r['fold_id']}|{r['selection']}"} for r in best.to_dict("records")]
        return options, (options[0]["value"] if options else None)

    def _run_file(self, study: str, protocol: str, choice: str | None) -> tuple[str, str] | None:
        if not choice or "|" not in choice:
            return None
        fold, selection = choice.split("|", 1)
        rows = self.store.read(study, "best_configs", filters={"protocol": protocol, "fold_id": fold, "selection": selection})
        if rows.empty:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{study}_{fold}_{selection}") + ".yaml"
        return name, rows.iloc[0]["run_file"]

    def export_preview(self, study: str | None, protocol: str, choice: str | None) -> tuple[list, str]:
        study = self.study(study)
        found = self._run_file(study, protocol, choice)
        return self.alerts(study, ("best_configs",)), (found[1] if found else "No configuration selected yet.")

    def export_download(self, study: str | None, protocol: str, choice: str | None) -> dict | None:
        found = self._run_file(self.study(study), protocol, choice)
        if found is None:
            return None
        name, text = found
        return {"content": text, "filename": name, "type": "application/x-yaml", "base64": False}


def _unfinished(progress: pd.DataFrame) -> int:
    return int(progress[["running", "pending"]].to_numpy().sum())


def _digest(frame: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(frame, index=False).sum()) if len(frame) else 0


def _arm_order(arms) -> list[str]:
    """full first, the prevalence floor last, the others in between by name."""
    arms = sorted(set(arms))
    return sorted(arms, key=lambda a: (a != "full", a == schema.PREVALENCE_ARM, a))


def _evaluated_classes(rows: pd.DataFrame) -> pd.DataFrame:
    """Drop classes with no figure in any domain (never positive in the data), which
    would otherwise sort as the rarest and push the rare classes that were evaluated
    out of sight."""
    if rows.empty:
        return rows
    has_figure = rows[["intra", "lodo"]].notna().any(axis=1).groupby(rows["class"]).transform("any")
    return rows[has_figure]


def _rare_classes(classes: pd.DataFrame) -> list[str]:
    if classes.empty:
        return []
    prevalence = classes.groupby("class")["train_prevalence"].mean().dropna()
    rare = [c for c in figures.rare_first(prevalence) if prevalence[c] < RARE_PREVALENCE]
    return rare[:MAX_RARE] or figures.rare_first(prevalence)[: MAX_RARE // 2]


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
