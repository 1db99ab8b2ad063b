"""The page: filters, tabs, and one skeleton per view whose parts the callbacks fill.

Only the active view is in the page, so only its callbacks run; each view's graphs exist
from the start (empty), which keeps ids stable for callbacks and browser tests alike.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dash_table, dcc, html

from heartbeatai.protocols import LODO, PROTOCOLS
from heartbeatai.results.summary import COLUMNS as SUMMARY_COLUMNS

VIEWS = {
    "studies": "Studies",
    "degradation": "Degradation",
    "ablations": "Ablations",
    "sweeps": "Sweeps",
    "records": "Records",
    "export": "Export",
}
METRICS = {"auroc": "AUROC", "f1": "F1", "auprc": "AUPRC"}
REFRESH_MS = 5000
STUDIES_PAGE_SIZE = 20


def _graph(graph_id: str) -> dcc.Loading:
    return dcc.Loading(dcc.Graph(id=graph_id, config={"displaylogo": False}), delay_show=300)


def _labelled(label: str, control, width: int = 2) -> dbc.Col:
    return dbc.Col([dbc.Label(label, className="small text-muted mb-0"), control], md=width)


def filters(studies: list[str]) -> dbc.Row:
    """`studies`: the Study menu's first choices (views.base.study_choices), the first of them shown."""
    return dbc.Row(
        [
            _labelled("Study", dcc.Dropdown(id="study", options=studies, value=studies[0] if studies else None,
                                            clearable=False), 3),
            _labelled("Protocol", dbc.RadioItems(id="protocol", options=[{"label": p, "value": p} for p in PROTOCOLS],
                                                 value=LODO, inline=True)),
            _labelled("Arms", dcc.Dropdown(id="arms", multi=True, placeholder="all arms"), 3),
            _labelled("Seed", dcc.Dropdown(id="seed", options=[{"label": "all seeds", "value": "all"}], value="all",
                                           clearable=False)),
            _labelled("Metric", dcc.Dropdown(id="metric", options=[{"label": v, "value": k} for k, v in METRICS.items()],
                                             value="auroc", clearable=False)),
        ],
        className="g-3 align-items-end mb-3",
    )


def page(studies: list[str], signature: str | None) -> html.Div:
    """The whole page, built per visit so it opens on the studies present now (`studies`: the
    Study menu's first choices)."""
    return html.Div(
        [
            dbc.Navbar(dbc.Container([dbc.NavbarBrand("HeartBeatAI results"), html.Span(id="live-badge")]),
                       color="dark", dark=True, className="mb-3"),
            dbc.Container(
                [
                    filters(studies),
                    dcc.Interval(id="refresh", interval=REFRESH_MS),
                    dcc.Store(id="signature", data=signature),
                    dbc.Tabs([dbc.Tab(label=label, tab_id=key) for key, label in VIEWS.items()], id="view",
                             active_tab="studies", className="mb-3"),
                    # The first view comes with the page, not a round trip later: its own
                    # callbacks start as soon as the layout is in.
                    html.Div(view_body("studies"), id="view-body"),
                ],
                fluid=True,
            ),
        ]
    )


def view_body(view: str) -> html.Div:
    return html.Div(_BODIES.get(view, _studies)(), id=f"{view}-view")


def _status(view: str) -> html.Div:
    return html.Div(id=f"{view}-status")


def studies_list() -> dash_table.DataTable:
    """The list of studies, a page at a time: the server sends one page of rows, in name order,
    filtered by the name box above it (a root may hold thousands of studies)."""
    return dash_table.DataTable(
        id="studies-list", data=[], columns=[{"name": c, "id": c} for c in SUMMARY_COLUMNS],
        page_size=STUDIES_PAGE_SIZE, page_current=0, page_count=1, page_action="custom",
        style_as_list_view=True, style_cell={"fontSize": "0.85rem", "textAlign": "left", "padding": "2px 8px"},
        style_header={"fontWeight": "bold"},
    )


def _studies() -> list:
    return [
        _status("studies"),
        html.H5("Studies under the results root"),
        dbc.Row([_labelled("Find a study", dcc.Input(id="studies-filter", type="search", debounce=True,
                                                     placeholder="part of its name", className="form-control"), 3)],
                className="mb-2"),
        studies_list(),
        dbc.Row([dbc.Col(_graph("progress-graph"), md=6), dbc.Col(_graph("card-graph"), md=6)]),
        html.Div(id="card-table"),
    ]


def _degradation() -> list:
    return [
        _status("degradation"),
        dbc.Row([
            _labelled("Labels", dbc.RadioItems(id="label-set", options=[{"label": s, "value": s} for s in ("noisy", "clean")],
                                               value="noisy", inline=True)),
        ], className="mb-2"),
        html.Div(id="degradation-reference"),
        _graph("degradation-heatmap"),
        dbc.Row([_labelled("Held-out domain", dcc.Dropdown(id="decomposition-domain", placeholder="the first"), 3),
                 _labelled("Class (or click a heatmap cell)", dcc.Dropdown(id="decomposition-class",
                                                                          placeholder="the rarest"), 3)],
                className="mb-2"),
        dbc.Row([dbc.Col(_graph("decomposition-graph"), md=7), dbc.Col(_graph("degradation-scatter"), md=5)]),
        html.Div(id="degradation-detail"),
    ]


def _ablations() -> list:
    return [
        _status("ablations"),
        _graph("ablation-graph"),
        html.H5("Paired tests against the full model"),
        html.Div(id="ablation-tests"),
        dbc.Row([_labelled("Per-class effects on", dcc.Dropdown(id="rare-domain", placeholder="across held-out domains"),
                           3)], className="mt-3"),
        _graph("rare-effects-graph"),
    ]


def _sweeps() -> list:
    return [
        _status("sweeps"),
        dbc.Row([_labelled("Fold", dcc.Dropdown(id="sweep-fold", clearable=False), 3)], className="mb-2"),
        _graph("parallel-graph"),
        dbc.Row([dbc.Col(_graph("importances-graph"), md=5), dbc.Col(_graph("curves-graph"), md=7)]),
        _graph("slice-graph"),
    ]


def _records() -> list:
    return [
        _status("records"),
        dbc.Row([
            _labelled("Fold", dcc.Dropdown(id="record-fold", clearable=False), 3),
            _labelled("Record (misclassified rare classes first)", dcc.Dropdown(id="record", clearable=False), 5),
            _labelled("Overlay", dbc.Switch(id="attribution-overlay", label="attribution", value=True)),
        ], className="mb-2"),
        html.Div(id="record-labels", className="mb-2"),
        _graph("ecg-graph"),
        dbc.Row([dbc.Col(_graph("probabilities-graph"), md=5), dbc.Col(_graph("gates-graph"), md=7)]),
    ]


def _export() -> list:
    return [
        _status("export"),
        dbc.Row([
            _labelled("Configuration", dcc.Dropdown(id="export-fold", clearable=False), 4),
            dbc.Col(dbc.Button("Download YAML", id="export-button", color="primary"), md=2),
        ], className="g-3 align-items-end mb-3"),
        html.Pre(id="export-preview", className="border rounded p-2 bg-light", style={"maxHeight": "60vh"}),
        dcc.Download(id="export-download"),
        html.H5("Report", className="mt-4"),
        html.P("The tables and figures of `heartbeatai report` (docs/report.md): every table as CSV, LaTeX and "
               "Markdown, every figure as PDF and PNG with its data, report.html. Built from the store when asked "
               "(a study still running is marked partial).", className="text-muted small"),
        dbc.Row([
            _labelled("Table", dcc.Dropdown(id="report-table", options=[{"label": k, "value": k} for k in _report_tables()],
                                            value="t2_main_results", clearable=False), 4),
            dbc.Col(dcc.Clipboard(target_id="report-latex", title="copy as LaTeX", className="btn btn-outline-secondary"),
                    md=1),
            dbc.Col(dbc.Button("Download report (zip)", id="report-button", color="primary"), md=3),
        ], className="g-3 align-items-end mb-3"),
        html.Pre(id="report-latex", className="border rounded p-2 bg-light", style={"maxHeight": "40vh"}),
        dcc.Download(id="report-download"),
    ]


def _report_tables() -> list[str]:
    from heartbeatai.report.tables import TABLES

    return list(TABLES)


_BODIES = {"studies": _studies, "degradation": _degradation, "ablations": _ablations, "sweeps": _sweeps,
           "records": _records, "export": _export}
