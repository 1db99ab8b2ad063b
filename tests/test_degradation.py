"""Degradation split: each kind of shift shows up in its own part."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from heartbeatai.metrics import tune_thresholds
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.study.degradation import (
    DEGRADATION_COLUMNS,
    DomainRuns,
    compare_domain,
    degradation_rows,
    degradation_table,
    f1_at_prevalence,
)
from heartbeatai.study.evaluation import evaluate_test

CLASSES = ["AF", "PAC"]


def _scores(y, separation=2.0, negative_shift=0.0, seed=0):
    """Sigmoid scores: negatives' logits ~ N(shift, 1), positives' ~ N(separation, 1)."""
    logits = np.random.default_rng(seed).normal(size=y.shape)
    return 1 / (1 + np.exp(-(logits + np.where(y, separation, negative_shift))))


def _draw(n, prevalence, seed=0, **shift):
    y = np.random.default_rng(seed).random((n, len(CLASSES))) < prevalence
    return y, _scores(y, seed=seed + 1, **shift)


def _runs(prevalence, trained_at, seed, seeds=2, **shift):
    """A protocol's runs (one per training seed) on one test domain, thresholds tuned on a
    validation set drawn where the models were trained (prevalence ``trained_at``, no shift)."""
    y_val, s_val = _draw(4000, trained_at, seed=99)
    thresholds = tune_thresholds(y_val, s_val, y_val.mean(axis=0))
    y = np.random.default_rng(seed).random((4000, len(CLASSES))) < prevalence
    scores = np.stack([_scores(y, seed=seed + 1 + s, **shift) for s in range(seeds)])
    return DomainRuns(y=y, scores=scores, predicted=scores >= thresholds,
                      train_prevalence=np.full(len(CLASSES), trained_at))


def _f1_rows(intra, lodo):
    rows = compare_domain(intra, lodo, CLASSES, n_boot=50)
    return rows[rows["metric"] == "f1"].set_index("class")


def test_prevalence_only_shift_shows_in_the_prevalence_part_not_in_ranking():
    intra = _runs(prevalence=0.05, trained_at=0.05, seed=10)
    lodo = _runs(prevalence=0.05, trained_at=0.3, seed=20)  # same scores, common in training
    f1 = _f1_rows(intra, lodo)
    assert (f1["ranking_part"].abs() < 0.03).all()
    assert (f1["prevalence_part"] < -0.15).all()
    assert (f1["delta"] < -0.05).all()


def test_style_only_shift_shows_in_ranking_or_threshold_not_in_prevalence():
    intra = _runs(prevalence=0.3, trained_at=0.3, seed=10)
    lodo = _runs(prevalence=0.3, trained_at=0.3, seed=20, separation=1.0, negative_shift=0.5)
    f1 = _f1_rows(intra, lodo)
    assert (f1["ranking_part"] < -0.1).all()
    assert (f1["threshold_part"] < -0.02).all()
    assert (f1["prevalence_part"].abs() < 0.01).all()


def test_no_shift_leaves_every_part_near_zero():
    f1 = _f1_rows(_runs(prevalence=0.2, trained_at=0.2, seed=10),
                  _runs(prevalence=0.2, trained_at=0.2, seed=20))
    for part in ("ranking_part", "threshold_part", "prevalence_part", "delta"):
        assert (f1[part].abs() < 0.03).all(), part


def test_f1_at_prevalence_is_the_f1_of_the_set_reweighted_to_that_prevalence():
    y, s = _draw(3000, 0.1, seed=4)
    y, called = y[:, 0], s[:, 0] >= 0.6
    tpr, fpr = called[y].mean(), called[~y].mean()
    assert f1_at_prevalence(tpr, fpr, y.mean()) == pytest.approx(f1_score(y, called))
    target = 0.4
    weights = np.where(y, target / y.mean(), (1 - target) / (1 - y.mean()))
    assert f1_at_prevalence(tpr, fpr, target) == pytest.approx(
        f1_score(y, called, sample_weight=weights))


def _store_tables(with_clean=True):
    """Test predictions of one domain `d`: two intra folds and the LODO fold, two seeds."""
    n = 600
    y = np.random.default_rng(11).random((n, len(CLASSES))) < 0.1
    ids = np.array([f"d-{i:04d}" for i in range(n)])
    parts = {"predictions": [], "class_metrics": []}
    for seed in (0, 1):
        runs = [("intra", "intra:d:0", np.arange(n) % 2 == 0, 2.0, 0.1),
                ("intra", "intra:d:1", np.arange(n) % 2 == 1, 2.0, 0.1),
                ("lodo", "lodo:d", np.ones(n, bool), 1.0, 0.3)]
        for protocol, fold_id, rows, separation, trained_at in runs:
            rng = np.random.default_rng(seed * 10 + len(fold_id))
            logits = rng.normal(size=y.shape) + separation * y
            scores = 1 / (1 + np.exp(-logits))
            key = {"study": "deg", "protocol": protocol, "fold_id": fold_id, "arm": "full",
                   "seed": seed, "selection": "val", "trial_id": f"{fold_id}-{seed}"}
            out = evaluate_test(ids[rows], ["d"] * rows.sum(), y[rows], scores[rows],
                                np.full(2, 0.5), CLASSES, np.full(2, trained_at), key,
                                y_clean=y[rows] if with_clean else None, n_boot=5)
            for table in parts:
                parts[table].append(out[table])
    return {t: pd.concat(f, ignore_index=True) for t, f in parts.items()}


def test_the_table_pairs_pooled_intra_folds_with_lodo_per_domain_and_label_set(tmp_path):
    tables = _store_tables()
    result = degradation_table(tables["predictions"], tables["class_metrics"], n_boot=30)
    assert list(result.columns) == DEGRADATION_COLUMNS
    assert len(result) == len(CLASSES) * 3 * 2  # classes x metrics x label sets
    auroc = result[(result["metric"] == "auroc") & (result["label_set"] == "noisy")].set_index("class")
    assert (auroc["delta"] < -0.1).all()  # LODO models were given less separation
    assert auroc["delta"].tolist() == pytest.approx((auroc["lodo"] - auroc["intra"]).tolist())
    assert (auroc["intra_lo"] <= auroc["intra"]).all() and (auroc["lodo"] <= auroc["lodo_hi"]).all()
    assert auroc["train_prevalence"].tolist() == pytest.approx([0.3, 0.3])
    assert auroc["ranking_part"].isna().all()
    f1 = result[(result["metric"] == "f1") & (result["label_set"] == "noisy")].set_index("class")
    assert f1["ranking_part"].tolist() == pytest.approx((auroc["lodo"] - auroc["intra"]).tolist())
    ResultsWriter(tmp_path / "deg").write("degradation", result)
    assert len(ResultsStore(str(tmp_path)).read("deg", "degradation")) == len(result)


def test_degradation_rows_of_a_stored_study_use_its_full_arm(tmp_path):
    tables = _store_tables()
    writer = ResultsWriter(tmp_path / "deg")
    for table, frame in tables.items():
        writer.write(table, frame)
        # a search-arm run on the same folds must not enter the comparison
        writer.write(table, frame.assign(arm="search", trial_id=frame["trial_id"] + "-search"))
    stored = degradation_rows(ResultsStore(str(tmp_path)), "deg", n_boot=30)
    expected = degradation_table(tables["predictions"], tables["class_metrics"], n_boot=30)
    key = ["domain", "class", "metric", "label_set"]
    pd.testing.assert_frame_equal(stored.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))


def test_a_domain_without_intra_runs_is_skipped():
    tables = _store_tables(with_clean=False)
    lodo_only = tables["predictions"][tables["predictions"]["protocol"] == "lodo"]
    assert degradation_table(lodo_only, tables["class_metrics"]).empty
