"""Optuna parameter importances of a fold's search respect the direction the study optimises."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from heartbeatai.study.importances import param_importances

SPACE = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}


def _study(direction: str) -> optuna.Study:
    """Good values come only from x > 0.7; among the bad ones, y orders them.

    So x decides how to reach good values, while y decides how to reach the worst ones: an
    evaluator that reads the direction backwards ranks y first.
    """
    rng = np.random.default_rng(0)
    sign = 1.0 if direction == "maximize" else -1.0
    study = optuna.create_study(direction=direction)
    for x, y in rng.random((40, 2)):
        value = 10.0 + x if x > 0.7 else y
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=SPACE,
                                                  value=sign * value))
    return study


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_importances_rank_the_parameter_that_reaches_good_values_first(direction):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "importances ... to achieve low target values" warning
        importances = param_importances(_study(direction), seed=0)
    assert set(importances) == {"x", "y"}
    assert importances["x"] > 2 * importances["y"]


def test_importances_repeat_with_the_same_seed():
    assert param_importances(_study("maximize"), seed=3) == param_importances(_study("maximize"), seed=3)


def test_a_search_whose_trials_all_scored_the_same_has_no_importances_and_no_error(tmp_path):
    """A small fold where every trial reaches the same value (fANOVA refuses zero variance)."""
    from heartbeatai.study.importances import search_importances

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s/lodo:a", storage=storage, direction="maximize")
    for x, y in np.random.default_rng(0).random((4, 2)):
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=SPACE, value=1.0))
    assert search_importances(storage, "s/lodo:a", seed=0) == (None, 4)
