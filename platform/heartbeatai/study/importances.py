"""Optuna parameter importances of a fold's search: which searched fields moved the metric.

Computed when a fold's search ends, from the persisted Optuna study alone, so the dashboard
shows them without Optuna's own machinery.
"""

from __future__ import annotations

import pandas as pd

# fANOVA needs a few finished trials that differ in their parameters; the dashboard shows
# them only from heartbeatai.dashboard.figures_sweeps.MIN_IMPORTANCE_TRIALS on.
MIN_FINISHED_TRIALS = 3


def param_importances(study, seed: int) -> dict[str, float]:
    """Optuna parameter importances of a fold's search, right for a maximised or a minimised metric.

    fANOVA (seeded, so a rerun gives the same figures): the share of the objective's variance
    each parameter explains, the same whichever way the study optimises. Optuna 5's default,
    PED-ANOVA, given a `target` ranks the parameters that reach *low* target values, wrong for
    `val_macro_auroc` (maximised); and it wants five trials in its top decile, which a search of
    a few dozen trials never has.
    """
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {param: float(value) for param, value in
            optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def search_importances(optuna_storage, optuna_study: str, seed: int) -> tuple[dict[str, float] | None, int]:
    """(importances, distinct completed trials) of the search persisted as `optuna_study`; the
    importances are None when too few distinct configurations completed or none searched a
    parameter. Trials of one configuration count once: repeats say nothing of a parameter."""
    import optuna

    study = optuna.load_study(study_name=optuna_study, storage=optuna_storage)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    distinct = len({tuple(sorted((k, repr(v)) for k, v in t.params.items())) for t in finished})
    if distinct < MIN_FINISHED_TRIALS or not study.best_trial.params:
        return None, distinct
    # Every trial reached the same value (a small fold where all of them score perfectly):
    # nothing varies for a parameter to explain, and fANOVA refuses a zero-variance objective.
    if len({t.value for t in finished}) < 2:
        return None, distinct
    return param_importances(study, seed=seed), distinct


def importance_rows(study: str, protocol: str, fold_id: str, importances: dict[str, float],
                    distinct_trials: int, arm: str = "search") -> pd.DataFrame:
    """The importances table's rows of one fold's search (`arm`'s: full's `search` or an
    algorithm arm's), each with the number of trials they rest on."""
    return pd.DataFrame([
        {"study": study, "protocol": protocol, "fold_id": fold_id, "param": param, "importance": float(value),
         "n_distinct_trials": int(distinct_trials), "arm": arm}
        for param, value in importances.items()
    ])
