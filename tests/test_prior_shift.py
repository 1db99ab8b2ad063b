"""Label-shift correction: EM recovers a planted prevalence from calibrated posteriors,
Bayes' rule inverts itself, Platt scaling repairs a monotone distortion, and un-smoothing
undoes label smoothing exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from heartbeatai.analysis.prior_shift import (
    adjust_to_prior, em_prior, em_priors, expected_calibration_error, fit_platt, unsmooth,
)


def _calibrated_posteriors(rng, n, prevalence, separation=1.5):
    """Binormal scores turned into the exact posterior under `prevalence`."""
    y = rng.random(n) < prevalence
    x = rng.normal(size=n) + separation * y
    log_lr = separation * x - separation ** 2 / 2
    return y, expit(log_lr + logit(prevalence))


@pytest.mark.parametrize(("source", "target"), [(0.05, 0.25), (0.3, 0.05), (0.1, 0.1)])
def test_em_recovers_the_planted_test_prevalence(source, target):
    rng = np.random.default_rng(0)
    # Posteriors are computed under the source prior, records drawn at the target prior.
    y = rng.random(20000) < target
    x = rng.normal(size=y.size) + 1.5 * y
    q = expit(1.5 * x - 1.5 ** 2 / 2 + logit(source))
    estimate = em_prior(q[:, None], np.array([source]))
    assert estimate[0] == pytest.approx(target, abs=0.01)


def _em_one_replicate(q, source_prior, weights, tol=1e-8, max_iter=1000):
    """Saerens et al.'s EM written out for one replicate, stopping on the largest class change:
    the reference the vectorised, per-cell-stopping em_priors is checked against."""
    w = weights / weights.sum()
    prior = np.clip(np.asarray(source_prior, dtype=float), 1e-6, 1 - 1e-6).copy()
    for _ in range(max_iter):
        updated = np.clip(w @ adjust_to_prior(q, source_prior, prior), 1e-6, 1 - 1e-6)
        if np.max(np.abs(updated - prior)) < tol:
            return updated
        prior = updated
    return prior


def test_the_vectorised_em_over_bootstrap_replicates_agrees_with_one_em_per_replicate():
    """em_priors stops each (replicate, class) on its own change; the reference on the largest of
    a replicate's classes. Both stop within tol's reach of the same fixed point."""
    rng = np.random.default_rng(3)
    source = np.array([0.01, 0.05, 0.2, 0.5])
    q = np.column_stack([_calibrated_posteriors(rng, 400, p)[1] for p in (0.002, 0.1, 0.2, 0.7)])
    weights = np.vstack([np.ones(400), rng.poisson(1.0, size=(30, 400))]).astype(float)
    one_by_one = np.array([_em_one_replicate(q, source, w) for w in weights])
    np.testing.assert_allclose(em_priors(q, source, weights), one_by_one, atol=1e-6)
    per_record = np.broadcast_to(source, q.shape)  # a pooled model: source priors per record
    np.testing.assert_allclose(em_priors(q, per_record, weights[:3]),
                               [_em_one_replicate(q, per_record, w) for w in weights[:3]], atol=1e-6)


def test_adjusting_to_a_prior_and_back_is_the_identity_and_the_source_prior_changes_nothing():
    q = np.linspace(0.01, 0.99, 50)[:, None]
    there = adjust_to_prior(q, np.array([0.1]), np.array([0.4]))
    np.testing.assert_allclose(adjust_to_prior(there, np.array([0.4]), np.array([0.1])), q)
    np.testing.assert_allclose(adjust_to_prior(q, np.array([0.2]), np.array([0.2])), q)


def test_platt_scaling_repairs_a_monotone_distortion_of_calibrated_probabilities():
    rng = np.random.default_rng(1)
    y, q = _calibrated_posteriors(rng, 5000, 0.1)
    distorted = expit(3.0 * logit(q) + 2.0)  # overconfident and shifted, as focal or ASL outputs are
    platt = fit_platt(distorted[:, None], y[:, None])
    repaired = platt(distorted[:, None])[:, 0]
    assert platt.fitted[0]
    # The inverse map is logit(q) = (logit(d) - 2) / 3.
    assert platt.a[0] == pytest.approx(1 / 3, abs=0.05) and platt.b[0] == pytest.approx(-2 / 3, abs=0.15)
    assert expected_calibration_error(repaired[:, None], y[:, None])[0] < 0.01
    assert expected_calibration_error(distorted[:, None], y[:, None])[0] > 0.04


def test_platt_keeps_the_identity_for_a_class_without_validation_positives():
    platt = fit_platt(np.full((10, 1), 0.3), np.zeros((10, 1), bool))
    assert not platt.fitted[0]
    np.testing.assert_allclose(platt(np.array([[0.2], [0.7]])), [[0.2], [0.7]], rtol=1e-6)


def test_unsmoothing_inverts_multilabel_label_smoothing():
    epsilon = 0.1
    p = np.linspace(0, 1, 11)
    smoothed = p * (1 - epsilon) + epsilon / 2
    np.testing.assert_allclose(unsmooth(smoothed, epsilon), p)
    assert unsmooth(np.array([0.01]), epsilon)[0] == 0.0  # below e/2 clips to 0
