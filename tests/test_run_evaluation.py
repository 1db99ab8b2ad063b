"""A tested run's evaluation (analysis/evaluation.py): weighted metrics equal scikit-learn's,
rows carry the store's schema, intervals bracket their estimate and are marked unreliable
below the minimum positives, and a threshold without validation positives is flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from heartbeatai.analysis.evaluation import (
    RunPredictions, evaluate_run, prediction_rows, prevalence_scores, prevalence_thresholds, run_predictions,
)
from heartbeatai.analysis.weighted_metrics import bootstrap_counts, challenge_scores, cinc_macro_fs
from heartbeatai.metric_names import FOLD_METRICS
from heartbeatai.metrics import weighted_class_metrics
from heartbeatai.metrics import challenge_score, cinc_macro_f, evaluate_predictions, snomed_codes, tune_thresholds
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.schema import table

CLASSES = ["AF", "RBBB", "PAC"]
KEY = {"study": "s", "protocol": "lodo", "fold_id": "lodo:georgia", "arm": "full", "seed": 1,
       "selection": "val", "trial_id": "t1"}


def _predictions(n: int, prevalence=(0.3, 0.1, 0.05), separation=1.5, seed=0):
    """Labels and scores where positives score higher by `separation` logits (rounded: ties occur)."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, len(prevalence))) < np.asarray(prevalence)
    logits = rng.normal(size=y.shape) + separation * y
    return y, np.round(1 / (1 + np.exp(-logits)), 2)


def _run(y, s, y_clean=None):
    n = len(y)
    return RunPredictions(np.array([f"r{i:04d}" for i in range(n)]), np.array(["georgia"] * n), y, y_clean, s)


def _seeded_inputs(seed):
    y, s = _predictions(300, seed=seed)
    return (_run(y, s), _run(*_predictions(200, seed=seed + 100)), np.array([0.5, 0.6, 0.55]),
            np.array([0.3, 0.1, 0.05]), CLASSES, KEY)


def _evaluate(n=300, seed=0, val_y=None, **kwargs):
    y, s = _predictions(n, seed=seed)
    val = _run(*_predictions(200, seed=seed + 100)) if val_y is None else _run(val_y, np.full(val_y.shape, 0.2))
    thresholds = np.array([0.5, 0.6, 0.55])
    options = {"min_positives": 10, "n_boot": 50, "seed": 0, **kwargs}
    return evaluate_run(_run(y, s), val, thresholds, np.array([0.3, 0.1, 0.05]), CLASSES, KEY, **options), y, s


def test_weighted_metrics_equal_scikit_learn_with_sample_weight_ties_included():
    y, s = _predictions(300)
    thresholds = np.array([0.5, 0.6, 0.55])
    weights = np.random.default_rng(1).integers(0, 4, size=(3, 300)).astype(float)
    got = weighted_class_metrics(y, s, s >= thresholds, weights)
    for b, w in enumerate(weights):
        for c in range(len(CLASSES)):
            kw = {"sample_weight": w}
            assert got["auroc"][b, c] == pytest.approx(roc_auc_score(y[:, c], s[:, c], **kw))
            assert got["auprc"][b, c] == pytest.approx(average_precision_score(y[:, c], s[:, c], **kw))
            assert got["f1"][b, c] == pytest.approx(f1_score(y[:, c], s[:, c] >= thresholds[c], zero_division=0, **kw))
            assert got["brier"][b, c] == pytest.approx(np.average((s[:, c] - y[:, c]) ** 2, weights=w))


def test_weighted_challenge_scores_equal_the_official_score_of_the_resampled_records():
    y, s = _predictions(120)
    called = s >= 0.5
    counts = bootstrap_counts(120, 4, 0)
    expected = [challenge_score(np.repeat(y, row.astype(int), axis=0), np.repeat(called, row.astype(int), axis=0),
                                snomed_codes(CLASSES)) for row in counts]
    np.testing.assert_allclose(challenge_scores(y, called, snomed_codes(CLASSES), counts), expected)


def test_weighted_cinc_macro_f_equals_the_point_figure_of_the_resampled_records():
    y, s = _predictions(120)
    called = s >= 0.5
    counts = bootstrap_counts(120, 4, 0)
    expected = [cinc_macro_f(np.repeat(y, row.astype(int), axis=0), np.repeat(called, row.astype(int), axis=0),
                             snomed_codes(CLASSES)) for row in counts]
    np.testing.assert_allclose(cinc_macro_fs(y, called, snomed_codes(CLASSES), counts), expected)


def test_rows_carry_exactly_the_store_schema_and_intervals_bracket_the_estimate():
    tables, _, _ = _evaluate()
    for name, frame in tables.items():
        declared = table(name)
        assert set(frame.columns) <= set(declared.columns), name
        assert set(declared.required) <= set(frame.columns), name
    for frame, low, high, value in ((tables["fold_metrics"], "ci_low", "ci_high", "value"),):
        assert (frame[low] <= frame[value] + 1e-12).all() and (frame[value] <= frame[high] + 1e-12).all()
    classes = tables["class_metrics"]
    for metric in ("f1", "auroc", "auprc"):
        inside = (classes[f"{metric}_lo"] <= classes[metric] + 1e-12) & (classes[metric] <= classes[f"{metric}_hi"] + 1e-12)
        assert inside.all(), metric


def test_point_figures_are_those_of_the_platform_metrics():
    tables, y, s = _evaluate()
    expected = evaluate_predictions(y, s, np.array([0.5, 0.6, 0.55]), CLASSES)
    per_class = tables["class_metrics"].set_index("class")
    for metric in ("f1", "auroc", "auprc", "brier"):
        assert per_class[metric].tolist() == pytest.approx(expected.per_class[metric].tolist())
    macro = tables["fold_metrics"].set_index("metric")["value"]
    for metric in ("macro_f1", "macro_auroc", "macro_auprc", "challenge_score", "brier", "cinc_macro_f"):
        assert macro[metric] == pytest.approx(expected.macro[metric])


def test_intervals_below_the_minimum_positives_are_marked_unreliable():
    tables, y, _ = _evaluate(min_positives=20)
    rows = tables["class_metrics"].set_index("class")
    for c, name in enumerate(CLASSES):
        assert rows.loc[name, "positives"] == y[:, c].sum()
        assert rows.loc[name, "interval_reliable"] == (y[:, c].sum() >= 20)
    assert not rows["interval_reliable"].all() and rows["interval_reliable"].any()


def test_a_class_without_validation_positives_has_its_threshold_flagged():
    val_y = np.zeros((50, 3), bool)
    val_y[:10, 0] = True  # AF has validation positives; RBBB and PAC have none
    tables, _, _ = _evaluate(val_y=val_y)
    rows = tables["class_metrics"].set_index("class")
    assert rows["threshold_fallback"].tolist() == [False, True, True]
    assert rows.loc["AF", "val_prevalence"] == pytest.approx(0.2)


def test_a_class_without_test_positives_is_absent_and_left_out_of_macro_averages():
    y, s = _predictions(200)
    y[:, 2] = False
    tables = evaluate_run(_run(y, s), None, np.full(3, 0.5), np.full(3, 0.1), CLASSES, KEY,
                          min_positives=10, n_boot=20, seed=0)
    rows = tables["class_metrics"].set_index("class")
    assert not rows.loc["PAC", "present"] and np.isnan(rows.loc["PAC", "auroc_lo"])
    used = json.loads(tables["fold_metrics"]["classes_used"].iloc[0])
    assert used == ["AF", "RBBB"]


def test_clean_labels_are_scored_beside_noisy_ones_and_noise_lowers_auroc():
    y, s = _predictions(400)
    noisy = y ^ (np.random.default_rng(3).random(y.shape) < 0.1)
    tables = evaluate_run(_run(noisy, s, y_clean=y), None, np.full(3, 0.5), np.full(3, 0.1), CLASSES, KEY,
                          min_positives=10, n_boot=20, seed=0)
    macro = tables["fold_metrics"].set_index(["label_set", "metric"])["value"]
    assert macro[("clean", "macro_auroc")] > macro[("noisy", "macro_auroc")]


def test_prevalence_floor_has_chance_auroc_and_calls_every_record():
    y, _ = _predictions(300)
    train_prevalence = np.array([0.3, 0.1, 0.05])
    scores = prevalence_scores(train_prevalence, 300)
    tables = evaluate_run(_run(y, scores), None, prevalence_thresholds(train_prevalence), train_prevalence,
                          CLASSES, KEY, min_positives=10, n_boot=20, seed=0)
    rows = tables["class_metrics"].set_index("class")
    assert rows["auroc"].tolist() == pytest.approx([0.5, 0.5, 0.5])
    pi = y.mean(axis=0)
    assert rows["f1"].tolist() == pytest.approx((2 * pi / (1 + pi)).tolist())


def test_same_seed_gives_the_same_rows_and_another_seed_another_challenge_interval():
    first, _, _ = _evaluate(seed=2)
    again, _, _ = _evaluate(seed=2)
    for name in first:
        assert first[name].equals(again[name])
    other = evaluate_run(*_seeded_inputs(2), min_positives=10, n_boot=50, seed=7)
    challenge = lambda t: t["fold_metrics"].set_index("metric").loc["challenge_score", "ci_low"]  # noqa: E731
    assert challenge(first) != challenge(other)


def test_prediction_rows_round_trip_through_the_store(tmp_path):
    y, s = _predictions(60)
    ids = [f"r{i:04d}" for i in range(60)]
    rows = prediction_rows(ids, ["georgia"] * 60, s, y, CLASSES, KEY, "test", y_clean=y)
    ResultsWriter(tmp_path / "s").write("predictions", rows)
    stored = ResultsStore(str(tmp_path)).read("s", "predictions")
    back = run_predictions(stored, CLASSES)
    np.testing.assert_array_equal(back.y, y)
    np.testing.assert_array_equal(back.y_clean, y)
    np.testing.assert_allclose(back.scores, s)


def test_mismatched_shapes_are_a_clear_error():
    y, s = _predictions(50)
    with pytest.raises(ValueError, match="shapes disagree"):
        evaluate_run(_run(y, s), None, np.full(2, 0.5), np.full(3, 0.1), CLASSES, KEY,
                     min_positives=10, n_boot=10, seed=0)


def test_thresholds_tuned_by_the_platform_are_reused_as_stored():
    y, s = _predictions(300)
    thresholds = tune_thresholds(y, s, y.mean(axis=0))
    tables = evaluate_run(_run(y, s), None, thresholds, y.mean(axis=0), CLASSES, KEY,
                          min_positives=10, n_boot=10, seed=0)
    assert tables["class_metrics"]["threshold"].tolist() == pytest.approx(thresholds.tolist())


def test_macro_auprc_names_its_classes_and_is_their_mean_average_precision():
    y, s = _predictions(200)
    y[:, 2] = False
    y[:4, 2] = True  # PAC: 4 positives, present but below macro AUPRC's ten
    tables = evaluate_run(_run(y, s), None, np.full(3, 0.5), np.full(3, 0.1), CLASSES, KEY,
                          min_positives=10, n_boot=20, seed=0)
    rows = tables["fold_metrics"][tables["fold_metrics"]["label_set"] == "noisy"].set_index("metric")
    assert json.loads(rows.loc["macro_auroc", "classes_used"]) == CLASSES
    assert json.loads(rows.loc["macro_auprc", "classes_used"]) == ["AF", "RBBB"]
    expected = np.mean([average_precision_score(y[:, c], s[:, c]) for c in (0, 1)])
    assert rows.loc["macro_auprc", "value"] == pytest.approx(expected)
    assert tables["class_metrics"].set_index("class").loc["PAC", "positives"] == 4


def test_without_a_class_of_ten_positives_no_macro_auprc_row_is_written_and_the_rest_store(tmp_path):
    y, s = _predictions(50, prevalence=(0.1, 0.1, 0.1), seed=3)
    y[10:, 2] = False
    assert (y.sum(axis=0) < 10).all() and y.any(axis=0).all()
    tables = evaluate_run(_run(y, s), None, np.full(3, 0.5), np.full(3, 0.1), CLASSES, KEY,
                          min_positives=5, n_boot=20, seed=0)
    ResultsWriter(tmp_path / "s").write("fold_metrics", tables["fold_metrics"])
    stored = ResultsStore(str(tmp_path)).read("s", "fold_metrics")
    assert set(stored["metric"]) == set(FOLD_METRICS) - {"macro_auprc"}
    assert stored["value"].notna().all()
