"""Wires the page's inputs to the views: one thin callback per view, nothing computed here.

Every callback goes through ``_guarded``: an error (a bad study name in a forged request,
an unforeseen shape of data) becomes a one-line alert in the view's status area, so the
page never shows a server error or goes blank.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, no_update

from heartbeatai.dashboard import layout
from heartbeatai.dashboard.figures import message_figure
from heartbeatai.dashboard.views import ViewInputError, Views

log = logging.getLogger(__name__)

_FILTERS = [Input("study", "value"), Input("signature", "data")]


def _guarded(callback: Callable, outputs: list[Output], status_index: int | None = 0) -> Callable:
    @functools.wraps(callback)
    def run(*args):
        try:
            result = callback(*args)
        except ViewInputError as err:  # a missing or invalid study, from the page or a forged request
            message, level = str(err), "warning"
        except Exception as err:  # noqa: BLE001 - the page must stay up whatever the data holds
            log.exception("dashboard callback %s failed", callback.__name__)
            message, level = f"could not draw this view: {type(err).__name__}: {err}", "danger"
        else:
            return tuple(result) if len(outputs) > 1 else result
        values = []
        for index, output in enumerate(outputs):
            if index == status_index:
                values.append([dbc.Alert(message, color=level, className="py-2 view-error")])
            elif output.component_property == "figure":
                values.append(message_figure(message))
            else:
                values.append(no_update)
        return tuple(values) if len(outputs) > 1 else values[0]

    return run


def _register(app: Dash, outputs: list[Output], inputs: list, callback: Callable, status_index: int | None = 0,
              **options) -> None:
    app.callback(*outputs, *inputs, **options)(_guarded(callback, outputs, status_index))


def register(app: Dash, views: Views) -> None:
    _register(app, [Output("study", "value"), Output("signature", "data"), Output("live-badge", "children")],
              [Input("refresh", "n_intervals"), State("study", "value"), State("signature", "data")],
              lambda _, study, signature: _changes_only(views.refresh(study, signature), study),
              status_index=None, prevent_initial_call=True)  # the page was built with what it would find
    _register(app, [Output("study", "options")], [Input("study", "search_value"), State("study", "value")],
              views.study_choices, status_index=None, prevent_initial_call=True)
    _register(app, [Output("arms", "options"), Output("seed", "options")], [Input("study", "value")],
              views.filter_options, status_index=None)
    _register(app, [Output("view-body", "children")], [Input("view", "active_tab")], layout.view_body,
              status_index=None, prevent_initial_call=True)  # the page holds the first view's body

    _register(app, [Output("studies-status", "children"), Output("progress-graph", "figure"),
                    Output("card-graph", "figure"), Output("card-table", "children")],
              _FILTERS, lambda study, _: views.studies(study))
    # The list follows the chosen study's signature too, so a refresh that found it changed
    # (a study running) redraws the page of rows beside it.
    _register(app, [Output("studies-list", "data"), Output("studies-list", "page_count")],
              [Input("studies-list", "page_current"), Input("studies-filter", "value"), Input("signature", "data")],
              lambda page, contains, _: views.studies_page(page, contains), status_index=None)

    # The split is in F1 units, the AUROC change beside it: the metric filter does not apply here.
    _register(app, [Output("degradation-status", "children"), Output("degradation-heatmap", "figure"),
                    Output("degradation-reference", "children"), Output("decomposition-class", "options"),
                    Output("decomposition-domain", "options")],
              [*_FILTERS, Input("label-set", "value")],
              lambda study, _, label_set: views.degradation(study, label_set))
    _register(app, [Output("decomposition-class", "value"), Output("decomposition-domain", "value")],
              [Input("degradation-heatmap", "clickData")], views.picked_cell, status_index=None,
              prevent_initial_call=True)
    _register(app, [Output("decomposition-graph", "figure"), Output("degradation-scatter", "figure"),
                    Output("degradation-detail", "children")],
              [*_FILTERS, Input("label-set", "value"), Input("decomposition-class", "value"),
               Input("decomposition-domain", "value")],
              lambda study, _, label_set, cls, domain: views.decomposition(study, label_set, cls, domain),
              status_index=None)

    _register(app, [Output("ablations-status", "children"), Output("ablation-graph", "figure"),
                    Output("ablation-tests", "children"), Output("rare-effects-graph", "figure")],
              [*_FILTERS, Input("protocol", "value"), Input("arms", "value"), Input("seed", "value"),
               Input("metric", "value"), Input("rare-domain", "value")],
              lambda study, _, protocol, arms, seed, metric, domain: views.ablations(study, protocol, arms, seed,
                                                                                     metric, domain))
    _register(app, [Output("rare-domain", "options"), Output("rare-domain", "value")],
              [*_FILTERS, Input("protocol", "value"), State("rare-domain", "value")],
              lambda study, _, protocol, current: views.rare_domains(study, protocol, current), status_index=None)

    _register(app, [Output("sweep-fold", "options"), Output("sweep-fold", "value")],
              [*_FILTERS, Input("protocol", "value")],
              lambda study, _, protocol: views.sweep_folds(study, protocol), status_index=None)
    _register(app, [Output("sweeps-status", "children"), Output("parallel-graph", "figure"),
                    Output("importances-graph", "figure"), Output("curves-graph", "figure"), Output("slice-graph", "figure")],
              [*_FILTERS, Input("protocol", "value"), Input("sweep-fold", "value")],
              lambda study, _, protocol, fold: views.sweeps(study, protocol, fold))

    _register(app, [Output("record-fold", "options"), Output("record-fold", "value")], _FILTERS,
              lambda study, _: views.record_folds(study), status_index=None)
    _register(app, [Output("record", "options"), Output("record", "value")],
              [*_FILTERS, Input("record-fold", "value")],
              lambda study, _, fold: views.record_options(study, fold), status_index=None)
    _register(app, [Output("records-status", "children"), Output("record-labels", "children"),
                    Output("ecg-graph", "figure"), Output("probabilities-graph", "figure"), Output("gates-graph", "figure")],
              [*_FILTERS, Input("record-fold", "value"), Input("record", "value"), Input("attribution-overlay", "value")],
              lambda study, _, fold, record, overlay: views.record(study, fold, record, overlay))

    _register(app, [Output("export-fold", "options"), Output("export-fold", "value")],
              [*_FILTERS, Input("protocol", "value")],
              lambda study, _, protocol: views.export_options(study, protocol), status_index=None)
    _register(app, [Output("export-status", "children"), Output("export-preview", "children")],
              [*_FILTERS, Input("protocol", "value"), Input("export-fold", "value")],
              lambda study, _, protocol, choice: views.export_preview(study, protocol, choice))
    _register(app, [Output("report-latex", "children")], [*_FILTERS, Input("report-table", "value")],
              lambda study, _, key: views.report_latex(study, key), status_index=None)
    _register(app, [Output("report-download", "data")], [Input("report-button", "n_clicks"), State("study", "value")],
              lambda _, study: views.report_archive(study), status_index=None, prevent_initial_call=True)
    _register(app, [Output("export-download", "data")],
              [Input("export-button", "n_clicks"), State("study", "value"), State("protocol", "value"),
               State("export-fold", "value")],
              lambda _, study, protocol, choice: views.export_download(study, protocol, choice) or no_update,
              status_index=None, prevent_initial_call=True)


def _changes_only(values: tuple, shown_study: str | None) -> tuple:
    """Dash re-runs every dependent of an output it sets, even to the same value: a refresh
    that found nothing new sets neither the study nor the signature, so no view re-renders."""
    study, signature, badge = values
    return (no_update if study == shown_study else study, no_update if signature is None else signature, badge)
