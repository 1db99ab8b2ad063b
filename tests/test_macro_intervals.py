"""Macro-average intervals: each class's influence values are the derivatives of its
weighted metric in the record weights (checked numerically against the weighted metrics
the bootstrap uses), and the interval keeps one class set however rare a class is."""

from __future__ import annotations

import numpy as np
import pytest

from heartbeatai.analysis.macro_intervals import (
    auroc_influence, average_precision_influence, f1_influence, macro_intervals,
)
from heartbeatai.metrics import weighted_class_metrics


def _numeric_derivative(y, s, called, metric, eps=1e-6):
    n = len(y)
    weights = np.ones((n + 1, n))
    weights[1:] += eps * np.eye(n)
    values = weighted_class_metrics(y[:, None], s[:, None], called[:, None], weights)[metric][:, 0]
    return (values[1:] - values[0]) / eps


@pytest.mark.parametrize("seed", range(3))
def test_influence_values_are_the_weight_derivatives_of_the_weighted_metrics(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.25
    s = np.round(rng.normal(size=60) + 1.2 * y, 1)  # ties, as sklearn's steps treat them
    called = s >= 0.5
    for metric, (value, psi, _) in {
        "auroc": auroc_influence(y, s),
        "auprc": average_precision_influence(y, s),
        "f1": f1_influence(y, called),
    }.items():
        reference = weighted_class_metrics(y[:, None], s[:, None], called[:, None], np.ones((1, 60)))[metric][0, 0]
        assert value == pytest.approx(reference), metric
        np.testing.assert_allclose(psi, _numeric_derivative(y, s, called, metric), atol=2e-5, err_msg=metric)


def test_a_class_with_one_positive_stays_in_the_macro_interval_and_widens_it():
    rng = np.random.default_rng(4)
    n = 200
    y = np.zeros((n, 3), bool)
    y[:40, 0] = True
    y[40:70, 1] = True
    y[70, 2] = True  # a single positive
    s = rng.normal(size=(n, 3)) + 1.5 * y
    called = s >= 1.0
    both = macro_intervals(y, s, called, np.array([True, True, True]))
    common = macro_intervals(y, s, called, np.array([True, True, False]))
    per_class = weighted_class_metrics(y, s, called, np.ones((1, n)))
    for name in ("macro_auroc", "macro_f1", "macro_auprc"):
        assert both[name].value == pytest.approx(np.mean(per_class[name.removeprefix("macro_")][0]))
        assert both[name].low <= both[name].value <= both[name].high
    # One positive says little about a ranking: its small-sample variance widens the average.
    for name in ("macro_auroc", "macro_auprc"):
        assert both[name].high - both[name].low > common[name].high - common[name].low, name
