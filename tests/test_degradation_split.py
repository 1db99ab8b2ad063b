"""The degradation split (DESIGN.md, Analysis): its F1 figures agree with sklearn's, identical
models give zeros, a pure prior shift lands in the prevalence part with a ranking part of zero,
and a pure calibration shift at equal prevalences gives a prevalence part of exactly zero."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.metrics import f1_score, precision_recall_curve

from heartbeatai.analysis.degradation_split import (
    ScoredRecords, best_f1, split_parts, three_evaluations, weighted_f1,
)
from heartbeatai.analysis.prior_shift import adjust_to_prior


def _records(rng, n=3000, prevalence=0.08, separation=2.0):
    y = rng.random(n) < prevalence
    x = rng.normal(size=n) + separation * y
    log_lr = separation * x - separation ** 2 / 2
    return y[:, None], log_lr[:, None]


def _model(log_lr, prior, threshold):
    """A model calibrated to its training prior, deploying `threshold` on its own probabilities."""
    calibrated = expit(log_lr + logit(prior))
    return ScoredRecords(calibrated, np.full_like(calibrated, prior), calibrated >= threshold,
                         np.full_like(calibrated, threshold))


def _weights(rng, n, n_boot=20):
    return np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=n_boot)]).astype(float)


def test_identical_models_give_a_zero_total_and_zero_parts():
    rng = np.random.default_rng(0)
    y, log_lr = _records(rng)
    model = _model(log_lr, 0.2, 0.5)
    weights = _weights(rng, len(y))
    parts = split_parts(three_evaluations(y, model, weights), three_evaluations(y, model, weights))
    for name, values in parts.items():
        assert np.all(values == 0), name


def _sklearn_evaluations(y, model, weights):
    """F(dep), F(pc) and F(best) of one model under record weights, computed by sklearn: F(pc)
    at the deployed cut after Bayes' rule moves the calibrated probabilities from the model's
    source prior to the records' weighted prevalence (numpy's weighted average); F(best) the
    best F1 over the thresholds of the precision-recall curve (a prior correction is monotone,
    so it ranks as the calibrated probabilities do)."""
    y, calibrated = y[:, 0], model.calibrated[:, 0]
    shift = logit(np.average(y, weights=weights)) - logit(model.source_prior[:, 0])
    corrected = expit(logit(calibrated) + shift)
    precision, recall, _ = precision_recall_curve(y, calibrated, sample_weight=weights)
    with np.errstate(invalid="ignore"):
        best = np.nanmax(2 * precision * recall / (precision + recall))
    return {"dep": f1_score(y, model.dep_calls[:, 0], sample_weight=weights),
            "pc": f1_score(y, corrected >= model.cut[:, 0], sample_weight=weights), "best": best}


@pytest.mark.parametrize("seed", range(3))
def test_the_total_and_every_part_agree_with_f1_scores_computed_by_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, log_lr = _records(rng)
    noisy = log_lr + rng.normal(0, 1.0, log_lr.shape)  # a worse ranker
    lodo, reference = _model(noisy, 0.3, 0.4), _model(log_lr, 0.08, 0.3)
    weights = _weights(rng, len(y), n_boot=3)
    evaluations = {"lodo": three_evaluations(y, lodo, weights), "reference": three_evaluations(y, reference, weights)}
    parts = split_parts(evaluations["lodo"], evaluations["reference"])

    for b, w in enumerate(weights):  # the point estimate and each bootstrap replicate
        lo, ref = (_sklearn_evaluations(y, model, w) for model in (lodo, reference))
        expected = {"total": lo["dep"] - ref["dep"],
                    "prevalence": (lo["dep"] - lo["pc"]) - (ref["dep"] - ref["pc"]),
                    "threshold": (lo["pc"] - lo["best"]) - (ref["pc"] - ref["best"]),
                    "ranking": lo["best"] - ref["best"]}
        for name, value in expected.items():
            assert parts[name][b, 0] == pytest.approx(value, abs=1e-9), (b, name)
    assert parts["ranking"][0, 0] < -0.05  # the worse ranker loses F1 even at its best threshold


def test_a_pure_prior_shift_is_a_prevalence_part_with_a_zero_ranking_part():
    """Same ranking of the same records; LODO was trained at 30% prevalence, the reference at
    the domain's own 8%, and both deploy the F1-optimal cut of their own training prior."""
    rng = np.random.default_rng(1)
    y, log_lr = _records(rng, prevalence=0.08)
    reference = _model(log_lr, 0.08, 0.35)
    lodo_calibrated = adjust_to_prior(reference.calibrated, np.full_like(reference.calibrated, 0.08), 0.3)
    lodo = ScoredRecords(lodo_calibrated, np.full_like(lodo_calibrated, 0.3), lodo_calibrated >= 0.35,
                         np.full_like(lodo_calibrated, 0.35))
    weights = _weights(rng, len(y))
    parts = split_parts(three_evaluations(y, lodo, weights), three_evaluations(y, reference, weights))
    assert np.all(parts["ranking"] == 0)  # a monotone rescoring ranks identically
    assert parts["total"][0, 0] < -0.02  # the shifted cut costs F1 on the rarer domain
    # Corrected to the same estimated prior, the two models are one: all of it is prevalence.
    np.testing.assert_allclose(parts["threshold"], 0, atol=1e-12)
    np.testing.assert_allclose(parts["prevalence"], parts["total"], atol=1e-12)


def test_a_pure_calibration_shift_at_equal_prevalences_gives_a_prevalence_part_of_exactly_zero():
    """Both models were calibrated where the prevalence was the test domain's own 10%; on the
    test domain the LODO model's logits sit 1.5 higher than its validation calibration says (a
    calibration shift, issue 19's case). The correction to the true prevalence is then the
    identity for both, so the prevalence part is 0 and the miscalibration lands in the
    threshold part; EM, reading the shifted probabilities as posteriors, is far off."""
    rng = np.random.default_rng(2)
    n = 3000
    y = np.zeros(n, bool)
    y[: n // 10] = True
    y = rng.permutation(y)[:, None]
    x = rng.normal(size=y.shape) + 2.0 * y
    log_lr = 2.0 * x - 2.0
    reference = _model(log_lr, 0.1, 0.3)
    lodo = _model(log_lr + 1.5, 0.1, 0.3)  # its source prior is 10% too: prevalences are equal
    weights = _weights(rng, n)
    evaluations = three_evaluations(y, lodo, weights), three_evaluations(y, reference, weights)
    parts = split_parts(*evaluations)
    assert parts["prevalence"][0, 0] == 0.0
    assert parts["total"][0, 0] < -0.05  # the shifted calls cost F1 ...
    assert parts["threshold"][0, 0] == pytest.approx(parts["total"][0, 0], abs=1e-12)  # ... at the threshold
    assert parts["ranking"][0, 0] == 0.0  # a logit offset ranks identically
    # A replicate's prevalence differs from 10%, so its correction is not the identity: small parts.
    assert np.abs(parts["prevalence"][1:]).max() < 0.05
    lodo_em = evaluations[0]["em_prevalence"][0, 0]
    assert lodo_em > 0.2  # EM would have moved the calls by a prior shift that is not there
    # The part an EM-estimated prior would have given (the split before issue 19): far from 0.
    corrected = adjust_to_prior(lodo.calibrated, lodo.source_prior, lodo_em) >= lodo.cut
    assert abs(f1_score(y[:, 0], lodo.dep_calls[:, 0]) - f1_score(y[:, 0], corrected[:, 0])) > 0.05


def test_weighted_and_best_f1_agree_with_their_definitions():
    y = np.array([[1], [1], [0], [0], [0], [1]], bool)
    s = np.array([[0.9], [0.8], [0.7], [0.2], [0.1], [0.05]])
    ones = np.ones((1, 6))
    assert weighted_f1(y, s >= 0.5, ones)[0, 0] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # Best cut at 0.8: tp 2, fp 0, fn 1 -> 0.8; calling everything: tp 3, fp 3 -> 0.667.
    assert best_f1(y, s, ones)[0, 0] == pytest.approx(0.8)
    doubled = np.array([[1, 1, 1, 1, 1, 3.0]])  # the last positive counted three times
    assert best_f1(y, s, doubled)[0, 0] == pytest.approx(max(2 * 2 / (2 + 0 + 5), 2 * 5 / (5 + 3 + 5)))
