"""The Sweeps view: one search of one fold, drawn with plotly from the trials table.

A fold has `full`'s search and, in a study comparing training algorithms, one search per
algorithm arm over `full`'s space plus that algorithm's own parameters: each is offered as
its own entry of the fold list ("lodo:cpsc: vrex search"), so its plots show its own
parameters (the trials' cfg.algorithm.* columns) beside the shared ones.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from heartbeatai.arms import algorithm_of
from heartbeatai.dashboard import figures, figures_sweeps
from heartbeatai.dashboard.views.base import ViewBase, per_store_state
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC
from heartbeatai.protocols import PROTOCOLS
from heartbeatai.results import schema

# The columns whose change redraws a fold's sweep figures.
_SWEEP_STATE = {"trials": ["trial_id", "status", "selection_value"], "epochs": ["trial_id", "epoch"],
                "importances": ["param", "importance", "arm"]}


WARM_STUDIES = 3  # studies whose sweep figures are built ahead of the first visit
# An algorithm arm's search in the fold list: "<fold id>|<arm>"; `full`'s is the fold id alone.
_ARM_SEPARATOR = "|"


def search_of(value: str) -> tuple[str, str]:
    """(fold id, the search's arm key) of a fold-list value."""
    fold, _, arm = value.partition(_ARM_SEPARATOR)
    return fold, arm or schema.SEARCH_ARM


class SweepsView(NamedTuple):
    status: list
    parallel: go.Figure
    importances: go.Figure
    curves: go.Figure
    slices: go.Figure


class SweepViews(ViewBase):
    @per_store_state
    def sweep_folds(self, study: str | None, protocol: str) -> tuple[list, str | None]:
        rows = self.store.read(study, "trials", columns=["fold_id", "arm"], filters={
            "protocol": protocol, "selection": "search"})
        searches = sorted(set(zip(rows["fold_id"], rows["arm"])),
                          key=lambda fold_arm: (fold_arm[0], fold_arm[1] != schema.SEARCH_ARM, fold_arm[1]))
        listed = [{"label": fold, "value": fold} if arm == schema.SEARCH_ARM else
                  {"label": f"{fold}: {algorithm_of(arm) or arm} search", "value": f"{fold}{_ARM_SEPARATOR}{arm}"}
                  for fold, arm in searches]
        return listed, (listed[0]["value"] if listed else None)

    def sweeps(self, study: str | None, protocol: str, fold: str | None) -> SweepsView:
        study = self.study(study)
        status = self.alerts(study, ("trials", "epochs", "importances"))
        if not fold:
            empty = figures.message_figure(f"no search trials under {protocol} yet")
            return SweepsView(status, empty, empty, empty, empty)
        fold, arm = search_of(fold)
        where = {"protocol": protocol, "fold_id": fold}
        # Keyed on this search's rows, not the study's files: while another fold searches, this
        # fold's figures stay as they are.
        search = {**where, "arm": arm}
        key = ("sweeps", study, protocol, fold, arm, *(
            _digest(self.store.read(study, name, columns=columns, filters=where if name == "importances" else search))
            for name, columns in _SWEEP_STATE.items()))
        return SweepsView(status, *self._cached(key, lambda: self._sweep_figures(study, where, arm)))

    def _sweep_figures(self, study: str, where: dict, arm: str = schema.SEARCH_ARM) -> tuple[go.Figure, ...]:
        trials = self.store.read(study, "trials", filters={**where, "arm": arm})
        epochs = self.store.read(study, "epochs", filters={**where, "arm": arm})
        # This search's own (rows without an arm are full's, from stores written before they named it).
        importances = self.store.read(study, "importances", filters=where)
        importances = importances[schema.searched_by(importances) == arm]
        stored = trials["selection_metric"].dropna()
        metric = stored.iloc[0] if len(stored) else DEFAULT_SELECTION_METRIC
        direction = figures_sweeps.direction_of(metric)
        curve_metric = metric if metric in epochs.columns else DEFAULT_SELECTION_METRIC
        # An algorithm arm's search adds its algorithm's own parameters to the study's space: no
        # list of them in the store, so its axes are those that vary.
        searched = self.store.searched_parameters(study) if arm == schema.SEARCH_ARM else None
        return (figures_sweeps.parallel_coordinates_figure(trials, metric, direction, searched=searched),
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
