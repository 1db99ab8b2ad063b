"""The degradation table from stored runs (analysis/degradation.py): LODO and the reference pair
on the same records of the held-out domain, identical models give zeros, parts add up, the
matched-size reference wins over intra folds, label smoothing is undone before EM, the
label-free estimates sit beside the truth and say when they are far from it, and the
calibration error is the test records'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scipy.special import expit, logit

from heartbeatai.analysis.degradation import degradation_rows
from heartbeatai.analysis.evaluation import prediction_rows
from heartbeatai.analysis.prior_shift import expected_calibration_error, far_from_truth, fit_platt
from heartbeatai.results.schema import PREVALENCE_ESTIMATORS, table

CLASSES = ["AF", "RBBB", "NSR"]
PREVALENCE = np.array([0.15, 0.08, 0.5])


def _scores(rng, y, separation=2.0, prior=0.2, smoothing=0.0):
    """Calibrated posteriors under `prior` (binormal log-likelihood ratios), then smoothed."""
    x = rng.normal(size=y.shape) + separation * y
    posterior = 1 / (1 + np.exp(-(separation * x - separation ** 2 / 2 + np.log(prior / (1 - prior)))))
    return posterior * (1 - smoothing) + smoothing / 2


class _Study:
    """Predictions, class_metrics inputs and trials of planted runs, as the store holds them."""

    def __init__(self):
        self.predictions, self.metrics, self.trials = [], [], []

    def add(self, fold, ids, y, scores, val_y, val_scores, seed=1, smoothing=0.0, threshold=0.5):
        protocol = fold.split(":")[0]
        trial = f"{fold}-{seed}"
        key = {"study": "s", "protocol": protocol, "fold_id": fold, "arm": "full", "seed": seed,
               "selection": "val", "trial_id": trial}
        self.predictions.append(prediction_rows(ids, ["alpha"] * len(ids), scores, y, CLASSES, key, "test"))
        val_ids = [f"v{fold}{i}" for i in range(len(val_y))]
        self.predictions.append(prediction_rows(val_ids, ["other"] * len(val_y), val_scores, val_y, CLASSES, key, "val"))
        self.metrics += [{**key, "split": "test", "label_set": "noisy", "class": c, "threshold": threshold,
                          "train_prevalence": float(p)} for c, p in zip(CLASSES, val_y.mean(axis=0))]
        self.trials.append({**key, "status": "completed", "cfg.label_smoothing": smoothing})

    def rows(self, **kwargs):
        options = {"n_boot": 40, "seed": 0, "min_positives": 10, **kwargs}
        return degradation_rows(pd.concat(self.predictions, ignore_index=True), pd.DataFrame(self.metrics),
                                pd.DataFrame(self.trials), "s", **options)


def _domain(rng, n=600):
    y = rng.random((n, len(CLASSES))) < PREVALENCE
    return [f"a{i:04d}" for i in range(n)], y


def test_identical_models_give_a_zero_total_and_zero_parts():
    rng = np.random.default_rng(0)
    ids, y = _domain(rng)
    scores = _scores(rng, y)
    val_y = rng.random((300, 3)) < PREVALENCE
    val_scores = _scores(rng, val_y)
    study = _Study()
    study.add("lodo:alpha", ids, y, scores, val_y, val_scores)
    half = len(ids) // 2  # the same scores, pooled from two intra folds with the same calibration data
    study.add("intra:alpha:0", ids[:half], y[:half], scores[:half], val_y, val_scores)
    study.add("intra:alpha:1", ids[half:], y[half:], scores[half:], val_y, val_scores)
    rows = study.rows()
    assert set(rows["reference_kind"]) == {"intra"} and (rows["n_records"] == len(ids)).all()
    for part in ("total", "prevalence", "threshold", "ranking", "auroc_change"):
        assert np.abs(rows[part]).max() < 1e-12, part


def test_parts_add_up_to_the_total_and_rows_carry_the_store_schema():
    rng = np.random.default_rng(1)
    ids, y = _domain(rng)
    val_y = rng.random((300, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, _scores(rng, y, separation=1.0, prior=0.4), val_y,
              _scores(rng, val_y, separation=1.0, prior=0.4), threshold=0.4)
    study.add("reference:alpha:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y), threshold=0.3)
    rows = study.rows()
    declared = table("degradation")
    assert set(rows.columns) <= set(declared.columns) and set(declared.required) <= set(rows.columns)
    np.testing.assert_allclose(rows["prevalence"] + rows["threshold"] + rows["ranking"], rows["total"], atol=1e-9)
    np.testing.assert_allclose(rows["total"], rows["f1_lodo"] - rows["f1_reference"], atol=1e-9)
    assert (rows["ranking"] < 0).all()  # the weaker LODO ranker loses F1 at its best cut too
    assert (rows["total_lo"] <= rows["total"]).all() and (rows["total"] <= rows["total_hi"]).all()


def test_the_matched_size_reference_is_used_where_the_study_ran_it():
    rng = np.random.default_rng(2)
    ids, y = _domain(rng)
    val_y = rng.random((200, 3)) < PREVALENCE
    study = _Study()
    for fold in ("lodo:alpha", "intra:alpha:0", "reference:alpha:0"):
        study.add(fold, ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    assert set(study.rows()["reference_kind"]) == {"reference"}


def test_the_reference_parts_are_pooled_so_lodo_pairs_on_every_record_they_tested():
    """reference:<d>:<i> folds each test one part of d (data/folds.py): pooled, they pair with
    LODO on the union of their records, each scored by the part's own model."""
    rng = np.random.default_rng(6)
    ids, y = _domain(rng)
    val_y = rng.random((200, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    half = len(ids) // 2
    study.add("reference:alpha:0", ids[:half], y[:half], _scores(rng, y[:half]), val_y, _scores(rng, val_y))
    study.add("reference:alpha:1", ids[half:], y[half:], _scores(rng, y[half:]), val_y, _scores(rng, val_y))
    rows = study.rows()
    assert set(rows["reference_kind"]) == {"reference"}
    assert (rows["n_records"] == len(ids)).all()
    only_one = _Study()
    only_one.add("lodo:alpha", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    only_one.add("reference:alpha:0", ids[:half], y[:half], _scores(rng, y[:half]), val_y, _scores(rng, val_y))
    assert (only_one.rows()["n_records"] == half).all()  # a part that did not run pairs on nothing


def test_a_domain_without_any_reference_is_left_out():
    rng = np.random.default_rng(3)
    ids, y = _domain(rng)
    val_y = rng.random((200, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    study.add("intra:beta:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    assert study.rows().empty


def test_label_smoothing_is_undone_before_em_estimates_the_test_prevalence():
    """Smoothed outputs are at least e/2; read as posteriors, EM drives a rare class's prevalence up."""
    rng = np.random.default_rng(4)
    ids, y = _domain(rng, n=2000)
    val_y = rng.random((1000, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, _scores(rng, y, smoothing=0.2), val_y, _scores(rng, val_y, smoothing=0.2),
              smoothing=0.2)
    study.add("reference:alpha:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    rows = study.rows().set_index("class")
    assert rows.loc["RBBB", "em_prevalence_lodo"] == pytest.approx(y[:, 1].mean(), abs=0.03)


def test_classes_without_a_positive_in_the_shared_records_are_not_split():
    rng = np.random.default_rng(5)
    ids, y = _domain(rng)
    y[:, 1] = False
    val_y = rng.random((200, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    study.add("reference:alpha:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    assert sorted(study.rows()["class"]) == ["AF", "NSR"]


def test_the_label_free_estimates_sit_beside_the_truth_and_say_when_they_are_far_from_it():
    """The LODO model's logits sit 2 higher on the held-out domain than on its validation records
    (a calibration shift): EM, reading them as posteriors, lands far from every class's true
    prevalence. The reference is calibrated there: both estimates of it are close and unflagged."""
    rng = np.random.default_rng(7)
    ids, y = _domain(rng, n=3000)
    val_y = rng.random((1500, 3)) < PREVALENCE
    study = _Study()
    study.add("lodo:alpha", ids, y, expit(logit(_scores(rng, y)) + 2.0), val_y, _scores(rng, val_y))
    study.add("reference:alpha:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    rows = study.rows()
    assert rows["em_far_lodo"].all()
    assert not rows[["em_far_reference", "bbse_far_reference"]].any().any()
    np.testing.assert_allclose(rows["bbse_prevalence_reference"], rows["test_prevalence"], atol=0.03)
    np.testing.assert_allclose(rows["test_prevalence"], y.mean(axis=0)[[CLASSES.index(c) for c in rows["class"]]])
    for estimator in PREVALENCE_ESTIMATORS:  # each flag is the rule applied to the row's own figures
        for side in ("lodo", "reference"):
            expected = far_from_truth(rows[f"{estimator}_prevalence_{side}"], rows["test_prevalence"])
            assert list(rows[f"{estimator}_far_{side}"]) == list(expected), (estimator, side)
    assert rows["conditional"].all()  # the intervals hold these trained models fixed


def test_the_calibration_error_is_measured_on_the_test_records_not_where_platt_was_fitted():
    """Shifted by 2 logits on the held-out domain only, the LODO model is well calibrated on its
    validation records (Platt was fitted there) and badly on the test records: the table shows the
    latter, the reference's stays small."""
    rng = np.random.default_rng(8)
    ids, y = _domain(rng, n=3000)
    val_y = rng.random((1500, 3)) < PREVALENCE
    val_scores = _scores(rng, val_y)
    study = _Study()
    study.add("lodo:alpha", ids, y, expit(logit(_scores(rng, y)) + 2.0), val_y, val_scores)
    study.add("reference:alpha:0", ids, y, _scores(rng, y), val_y, _scores(rng, val_y))
    rows = study.rows()
    on_validation = expected_calibration_error(fit_platt(val_scores, val_y)(val_scores), val_y)
    assert on_validation.max() < 0.03  # what the table used to show: small by construction
    assert (rows["test_calibration_error_lodo"] > 0.1).all()
    assert (rows["test_calibration_error_reference"] < 0.04).all()
