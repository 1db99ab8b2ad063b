"""Optuna parameter importances of a fold's search: which searched fields moved the metric.

Computed when a fold's search ends, from the persisted Optuna study alone, so the dashboard
shows them without Optuna's own machinery.
"""

from __future__ import annotations

import pandas as pd

# fANOVA needs a few finished trials that differ in their parameters.
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


def search_importances(optuna_storage: str, optuna_study: str, seed: int) -> tuple[dict[str, float] | None, int]:
    """(importances, finished trials) of the search persisted as `optuna_study`; the importances
    are None when too few trials finished or none searched a parameter."""
    import optuna

    study = optuna.load_study(study_name=optuna_study, storage=optuna_storage)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < MIN_FINISHED_TRIALS or not study.best_trial.params:
        return None, len(finished)
    return param_importances(study, seed=seed), len(finished)


def importance_rows(study: str, protocol: str, fold_id: str, importances: dict[str, float]) -> pd.DataFrame:
    """The importances table's rows of one fold."""
    return pd.DataFrame([
        {"study": study, "protocol": protocol, "fold_id": fold_id, "param": param, "importance": float(value)}
        for param, value in importances.items()
    ])
