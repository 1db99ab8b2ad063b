"""The Sweeps view: one fold's search, drawn with plotly from the trials table."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from heartbeatai.dashboard import figures, figures_sweeps
from heartbeatai.dashboard.views.base import ViewBase, options, per_store_state
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC
from heartbeatai.protocols import PROTOCOLS
from heartbeatai.results import schema

# The columns whose change redraws a fold's sweep figures.
_SWEEP_STATE = {"trials": ["trial_id", "status", "selection_value"], "epochs": ["trial_id", "epoch"],
                "importances": ["param", "importance"]}


WARM_STUDIES = 3  # studies whose sweep figures are built ahead of the first visit


class SweepsView(NamedTuple):
    status: list
    parallel: go.Figure
    importances: go.Figure
    curves: go.Figure
    slices: go.Figure


class SweepViews(ViewBase):
    @per_store_state
    def sweep_folds(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        folds = sorted(self.store.read(study, "trials", columns=["fold_id"], filters={
            "protocol": protocol, "arm": schema.SEARCH_ARM})["fold_id"].unique())
        return options(folds), (folds[0] if folds else None)

    def sweeps(self, study: str | None, protocol: str, fold: str | None) -> SweepsView:
        study = self.study(study)
        status = self.alerts(study, ("trials", "epochs", "importances"))
        if not fold:
            empty = figures.message_figure(f"no search trials under {protocol} yet")
            return SweepsView(status, empty, empty, empty, empty)
        where = {"protocol": protocol, "fold_id": fold}
        # Keyed on this fold's rows, not the study's files: while another fold searches, this
        # fold's figures stay as they are.
        search = {**where, "arm": schema.SEARCH_ARM}
        key = ("sweeps", study, protocol, fold, *(
            _digest(self.store.read(study, name, columns=columns, filters=where if name == "importances" else search))
            for name, columns in _SWEEP_STATE.items()))
        return SweepsView(status, *self._cached(key, lambda: self._sweep_figures(study, where)))

    def _sweep_figures(self, study: str, where: dict) -> tuple[go.Figure, ...]:
        trials = self.store.read(study, "trials", filters={**where, "arm": schema.SEARCH_ARM})
        epochs = self.store.read(study, "epochs", filters={**where, "arm": schema.SEARCH_ARM})
        importances = self.store.read(study, "importances", filters=where)
        stored = trials["selection_metric"].dropna()
        metric = stored.iloc[0] if len(stored) else DEFAULT_SELECTION_METRIC
        direction = figures_sweeps.direction_of(metric)
        curve_metric = metric if metric in epochs.columns else DEFAULT_SELECTION_METRIC
        return (figures_sweeps.parallel_coordinates_figure(trials, metric, direction),
                figures_sweeps.importances_figure(importances),
                figures_sweeps.learning_curves_figure(epochs, trials, curve_metric),
                figures_sweeps.slice_figure(trials, importances, metric, direction))

    def warm(self) -> None:
        """Build the sweep figures of every fold ahead of the first visit (a fold has thousands of trials),
        for the first studies the page opens on (not all of a root of thousands)."""
        for study in self.store.studies()[:WARM_STUDIES]:
            for protocol in PROTOCOLS:
                for option in self.sweep_folds(study, protocol)[0]:
                    self.sweeps(study, protocol, option["value"])


def _digest(frame: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(frame, index=False).sum()) if len(frame) else 0
