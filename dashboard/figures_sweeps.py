"""Figures of the Sweeps view, drawn with plotly straight from the trials table.

The dashboard never opens the study's Optuna database or Ray's experiment folders: the
trials table holds every trial's flattened config and selection value, which is all a
parallel-coordinates or slice plot needs. They are drawn from it directly: rebuilding an
Optuna study only to hand it to optuna.visualization cost 1.4 s typical and 3.9 s at p95 per
fold at 10,000 trials, half of it in two deep copies of the trials (issue 22), and put
Optuna and scipy on the dashboard's imports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from heartbeatai.dashboard.figures import STATUS_COLOURS, message_figure
from heartbeatai.metric_names import metric_mode
from heartbeatai.results.schema import COMPLETED, EARLY_STOPPED, ERRORED, RUNNING, SCORED_STATUSES

CFG = "cfg."
# The knobs the study is about (DESIGN.md, Study): sliced first when the sweep has them.
SLICE_PARAMS = ("mixstyle.p", "label_smoothing", "loss.kind")
PARALLEL_MAX_TRIALS = 300
# Importances of fewer distinct completed trials are noise (4 identical trials once ranked
# label_smoothing first where optuna-dashboard ranked mixstyle.p first): not drawn.
MIN_IMPORTANCE_TRIALS = 8
LOG, LINEAR, CATEGORICAL = "log", "linear", "categorical"
# Optuna's colours: darker is better, whichever the direction.
_SCALE = "Blues"


def direction_of(selection_metric: str) -> str:
    """The search's direction for a metric, from the metric registry (a name it lacks is an error)."""
    return {"max": "maximize", "min": "minimize"}[metric_mode(selection_metric)]


def ranked(trials: pd.DataFrame, direction: str = "maximize") -> pd.DataFrame:
    """The scored trials of one fold's search, best first. ASHA-stopped trials count, as Ray's
    OptunaSearch reported them to the sampler (COMPLETE)."""
    values = pd.to_numeric(trials["selection_value"], errors="coerce")
    scored = trials[trials["status"].isin(SCORED_STATUSES) & np.isfinite(values)]
    return scored.sort_values("selection_value", ascending=direction == "minimize", kind="stable")


def search_params(scored: pd.DataFrame) -> dict[str, str]:
    """Each searched parameter (a cfg. column some scored trial set, with more than one value)
    and how to draw its axis: log, linear or categorical."""
    kinds = {}
    for column in (c for c in scored.columns if c.startswith(CFG)):
        present = scored[column].dropna()
        if present.empty or present.astype(str).nunique() < 2:
            continue  # fixed in this search: nothing to plot against
        if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
            kinds[column[len(CFG):]] = CATEGORICAL
            continue
        values = present.to_numpy(float)
        low, high = values.min(), values.max()
        log = low > 0 and high / low >= 10 and _looks_log_uniform(values)
        kinds[column[len(CFG):]] = LOG if log else LINEAR
    return kinds


def _looks_log_uniform(values: np.ndarray) -> bool:
    """The table keeps values, not the search space: a parameter is taken as log-scaled when its
    samples sit more uniformly on the log axis than on the linear one (lr yes, MixStyle p no)."""
    return _uniform_distance(np.log(values)) < _uniform_distance(values)


def _uniform_distance(x: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the samples from a uniform over their own range."""
    x = np.sort(x)
    span = np.ptp(x) or 1.0
    cdf = np.clip((x - x[0]) / span, 0.0, 1.0)
    n = len(x)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def parallel_coordinates_figure(trials: pd.DataFrame, metric: str, direction: str = "maximize",
                                max_trials: int = PARALLEL_MAX_TRIALS, searched: list[str] | None = None) -> go.Figure:
    """The scored trials as parallel coordinates: the selection value, then each parameter;
    past ``max_trials`` only the best ones. A parameter some shown trials did not sample
    (a conditional one) is left out, as Optuna's own plot leaves it.

    A trial row carries its whole configuration (~35 cfg. columns), and some that were not
    searched still differ between trials (issue 24): where the study config names its search
    space (`searched`), only those parameters get an axis."""
    scored = ranked(trials, direction)
    if scored.empty:
        return message_figure("no scored trials yet")
    title = "Parallel coordinates"
    if len(scored) > max_trials:
        title = f"Parallel coordinates of the best {max_trials} of {len(scored)} scored trials"
        scored = scored.iloc[:max_trials]
    values = scored["selection_value"].to_numpy(float)
    dimensions = [dict(label=metric, values=values)]
    for name, kind in search_params(scored).items():
        if searched is not None and name not in searched:
            continue
        column = scored[CFG + name]
        if column.isna().any():
            continue
        dimensions.append(_dimension(name, column, kind))
    line = dict(color=values, colorscale=_SCALE, reversescale=direction == "minimize", showscale=True,
                colorbar=dict(title=dict(text=metric)))
    figure = go.Figure(go.Parcoords(line=line, dimensions=dimensions))
    return figure.update_layout(height=420, title=title, margin=dict(l=80, r=80))


def _dimension(name: str, column: pd.Series, kind: str) -> dict:
    if kind == CATEGORICAL:
        labels = column.astype(str)
        categories = sorted(labels.unique())
        codes = labels.map({c: i for i, c in enumerate(categories)}).to_numpy(float)
        return dict(label=name, values=codes, tickvals=list(range(len(categories))), ticktext=categories)
    values = column.to_numpy(float)
    if kind == LOG:  # drawn on log10, labelled with the values
        ticks = np.arange(np.floor(np.log10(values.min())), np.ceil(np.log10(values.max())) + 1)
        return dict(label=name, values=np.log10(values), tickvals=ticks, ticktext=[f"{10 ** t:.3g}" for t in ticks])
    return dict(label=name, values=values)


def slice_figure(trials: pd.DataFrame, importances: pd.DataFrame, metric: str, direction: str = "maximize") -> go.Figure:
    """The selection value against each parameter, one panel per parameter: the study's own
    knobs when the sweep has them, else its three most important; darker dots are trials written later."""
    scored = ranked(trials, direction)
    if scored.empty:
        return message_figure("no scored trials yet")
    kinds = search_params(scored)
    # An algorithm arm's search is about its own parameters: they are sliced first.
    own = sorted(p for p in kinds if p.startswith("algorithm.") and p != "algorithm.kind")
    params = (own + [p for p in SLICE_PARAMS if p in kinds])[:3] if own else [p for p in SLICE_PARAMS if p in kinds]
    if not params:  # a sweep of other knobs: slice its three most important ones
        params = [p for p in importances.sort_values("importance", ascending=False)["param"] if p in kinds][:3]
    params = params or list(kinds)[:3]
    if not params:
        return message_figure("no parameter varies in this search")
    order = scored.sort_index()  # the order the trials were written in
    number = np.arange(len(order))
    figure = make_subplots(rows=1, cols=len(params), shared_yaxes=True, horizontal_spacing=0.04)
    for index, name in enumerate(params, start=1):
        column = order[CFG + name]
        shown = column.notna().to_numpy()
        x = column[shown].astype(str) if kinds[name] == CATEGORICAL else column[shown].astype(float)
        figure.add_scattergl(x=x, y=order["selection_value"][shown].astype(float), mode="markers", name=name,
                             marker=dict(color=number[shown], colorscale=_SCALE, size=6,
                                         line=dict(width=0.5, color="grey"), showscale=index == len(params),
                                         colorbar=dict(title=dict(text="trial"))),
                             text=order["trial_id"][shown] if "trial_id" in order else None,
                             hovertemplate=f"{name}: %{{x}}<br>{metric}: %{{y:.4f}}<br>%{{text}}<extra></extra>",
                             row=1, col=index)
        figure.update_xaxes(title_text=name, type="log" if kinds[name] == LOG else None, row=1, col=index)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    return figure.update_layout(height=380, showlegend=False, title="Slice plot")
def importances_figure(importances: pd.DataFrame) -> go.Figure:
    """The fold's stored Optuna importances (computed once when the fold finished), shown only
    when they rest on MIN_IMPORTANCE_TRIALS distinct completed trials or more."""
    if importances.empty:
        return message_figure("importances are computed when the fold's search finishes")
    counts = importances["n_distinct_trials"].dropna() if "n_distinct_trials" in importances else pd.Series([])
    if counts.empty:
        return message_figure("importances not shown: this store does not record how many trials they rest on")
    if int(counts.min()) < MIN_IMPORTANCE_TRIALS:
        return message_figure(f"importances not shown: they rest on {int(counts.min())} distinct completed "
                              f"trial(s), and below {MIN_IMPORTANCE_TRIALS} their ranking is noise")
    ordered = importances.sort_values("importance")
    figure = go.Figure(go.Bar(x=ordered["importance"], y=ordered["param"], orientation="h",
                              text=ordered["importance"].map(lambda v: f"{v:.2f}"), marker_color="#1565c0",
                              hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return figure.update_layout(title="Hyperparameter importances", xaxis_title="importance",
                                height=140 + 30 * len(ordered), margin=dict(l=140, r=20, t=50, b=40))


def learning_curves_figure(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str) -> go.Figure:
    """Validation curves of the search trials, ASHA-stopped ones drawn apart and their stop marked."""
    if epochs.empty:
        return message_figure("no epochs reported yet")
    status = trials.set_index("trial_id")["status"]
    curves = epochs[["trial_id", "epoch", metric]].dropna().sort_values(["trial_id", "epoch"])
    curves = curves.assign(status=curves["trial_id"].map(status).fillna(RUNNING))
    figure = go.Figure()
    for state in (COMPLETED, RUNNING, EARLY_STOPPED, ERRORED):  # a pending trial has no epochs
        group = curves[curves["status"] == state]
        if group.empty:
            continue
        # One trace per status, trials separated by NaN gaps: thousands stay one WebGL draw.
        ids = group["trial_id"].to_numpy()
        last = np.r_[ids[1:] != ids[:-1], True]  # the last reported epoch of each trial
        positions = np.arange(len(group)) + np.r_[0, np.cumsum(last)[:-1]]
        # float32 halves what the browser downloads; a validation metric needs no more digits.
        xs, ys = (np.full(len(group) + last.sum(), np.nan, dtype=np.float32) for _ in range(2))
        xs[positions], ys[positions] = group["epoch"].to_numpy(float), group[metric].to_numpy(float)
        figure.add_scattergl(x=xs, y=ys, mode="lines", name=state.replace("_", " "),
                             line=dict(width=1, color=STATUS_COLOURS[state]), opacity=0.5, hoverinfo="skip")
        if state == EARLY_STOPPED:
            stops = group[last]
            figure.add_scattergl(x=stops["epoch"], y=stops[metric], mode="markers", name="stopped by ASHA",
                                 marker=dict(symbol="x", size=7, color=STATUS_COLOURS[state]), text=stops["trial_id"],
                                 hovertemplate="%{text} stopped after epoch %{x}: %{y:.3f}<extra></extra>")
    return figure.update_layout(title="Learning curves (validation)", xaxis_title="epoch",
                                yaxis_title=metric.replace("_", " "), height=400)
