"""Figures of the Sweeps view: Optuna's own plots, over a study rebuilt from the trials table.

The dashboard never opens the study's Optuna database or Ray's experiment folders: the
trials table holds every trial's flattened config and selection value, which is all
optuna.visualization needs, so an in-memory study is rebuilt from those rows.
"""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from scipy import stats
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

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

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _distribution(values: pd.Series) -> BaseDistribution:
    present = values.dropna()
    if present.empty:
        raise ValueError("no values")
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        return CategoricalDistribution(sorted({str(v) if not isinstance(v, bool) else v for v in present}, key=str))
    low, high = float(present.min()), float(present.max())
    log = low > 0 and high / low >= 10 and _looks_log_uniform(present.to_numpy(float))
    if pd.api.types.is_integer_dtype(present):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def _looks_log_uniform(values: np.ndarray) -> bool:
    """The table keeps values, not the search space: a parameter is taken as log-scaled when its
    samples sit more uniformly on the log axis than on the linear one (lr yes, MixStyle p no)."""
    def distance(x: np.ndarray) -> float:
        return stats.kstest(x, "uniform", args=(x.min(), np.ptp(x) or 1.0)).statistic

    return distance(np.log(values)) < distance(values)


def _param_value(value, distribution: BaseDistribution):
    if isinstance(distribution, CategoricalDistribution):
        return value if isinstance(value, bool) else str(value)
    if isinstance(distribution, IntDistribution):
        return int(value)
    return float(value)


def optuna_study(trials: pd.DataFrame, direction: str = "maximize") -> optuna.Study:
    """An in-memory Optuna study holding the scored trials of one fold's search."""
    # Ray's OptunaSearch reports ASHA-stopped trials to Optuna as COMPLETE; the rebuilt study
    # does the same so its plots match what the sampler saw.
    scored = trials[trials["status"].isin(SCORED_STATUSES) & np.isfinite(trials["selection_value"].astype(float))]
    columns = [c for c in trials.columns if c.startswith(CFG)]
    distributions = {}
    for column in columns:
        try:
            distributions[column[len(CFG):]] = _distribution(scored[column])
        except ValueError:
            continue  # a parameter no scored trial set
    records = scored[columns].to_dict("records")
    frozen = []
    for row, value in zip(records, scored["selection_value"].astype(float)):
        params, used = {}, {}
        for name, distribution in distributions.items():
            raw = row[CFG + name]
            if raw is None or (isinstance(raw, float) and np.isnan(raw)):
                continue  # conditional parameter this trial did not sample
            params[name], used[name] = _param_value(raw, distribution), distribution
        frozen.append(optuna.trial.create_trial(params=params, distributions=used, value=value))
    study = optuna.create_study(direction=direction)
    study.add_trials(frozen)
    return study


def direction_of(selection_metric: str) -> str:
    """Optuna's direction for a metric, from the metric registry (a name it lacks is an error)."""
    return {"max": "maximize", "min": "minimize"}[metric_mode(selection_metric)]


def parallel_coordinates_figure(study: optuna.Study, target_name: str, max_trials: int = PARALLEL_MAX_TRIALS) -> go.Figure:
    """Optuna's parallel coordinates; past ``max_trials`` only the best ones (Optuna draws one
    plotly trace per trial, which neither the server nor the browser carries for thousands)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not trials:
        return message_figure("no scored trials yet")
    title = "Parallel coordinates"
    if len(trials) > max_trials:
        best = sorted(trials, key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
        shown = optuna.create_study(direction=study.direction)
        shown.add_trials(best[:max_trials])
        study, title = shown, f"Parallel coordinates of the best {max_trials} of {len(trials)} scored trials"
    figure = optuna.visualization.plot_parallel_coordinate(study, target_name=target_name)
    return figure.update_layout(template="plotly_white", height=420, title=title)


def slice_figure(study: optuna.Study, importances: pd.DataFrame, target_name: str) -> go.Figure:
    if not study.trials:
        return message_figure("no scored trials yet")
    sampled = set(study.best_trial.distributions) | {p for t in study.trials[:50] for p in t.params}
    # An algorithm arm's search is about its own parameters: they are sliced first.
    own = sorted(p for p in sampled if p.startswith("algorithm.") and p != "algorithm.kind")
    params = (own + [p for p in SLICE_PARAMS if p in sampled])[:3] if own else [p for p in SLICE_PARAMS if p in sampled]
    if not params:  # a sweep of other knobs: slice its three most important ones
        params = [p for p in importances.sort_values("importance", ascending=False)["param"] if p in sampled][:3]
    figure = optuna.visualization.plot_slice(study, params=params or None, target_name=target_name)
    return figure.update_layout(template="plotly_white", height=380)


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
    return figure.update_layout(template="plotly_white", title="Hyperparameter importances", xaxis_title="importance",
                                height=140 + 30 * len(ordered), margin=dict(l=140, r=20, t=50, b=40))


def learning_curves_figure(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str) -> go.Figure:
    """Validation curves of the search trials, ASHA-stopped ones drawn apart and their stop marked."""
    if epochs.empty:
        return message_figure("no epochs reported yet")
    status = trials.set_index("trial_id")["status"]
    curves = epochs[["trial_id", "epoch", metric]].dropna().sort_values(["trial_id", "epoch"])
    curves = curves.assign(status=curves["trial_id"].map(status).fillna(RUNNING))
    figure = go.Figure(layout=dict(template="plotly_white"))
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
