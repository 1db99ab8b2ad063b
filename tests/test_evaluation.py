"""Test-set evaluation: weighted metrics, bootstrap intervals and the store's rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from heartbeatai.study.evaluation import (
    bootstrap_counts,
    evaluate_test,
    prevalence_scores,
    prevalence_thresholds,
    weighted_class_metrics,
)

CLASSES = ["AF", "RBBB", "PAC"]
KEY = {
    "study": "s", "protocol": "lodo", "fold_id": "lodo:georgia", "arm": "full",
    "seed": 0, "selection": "val", "trial_id": "t1",
}
FOLD_METRICS_COLUMNS = [*KEY, "split", "label_set", "metric", "value", "ci_low", "ci_high",
                        "classes_used"]
CLASS_METRICS_COLUMNS = [
    *KEY, "split", "label_set", "class", "positives", "train_prevalence", "test_prevalence",
    "present", "f1", "f1_lo", "f1_hi", "auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo",
    "auprc_hi", "brier", "threshold",
]


def _predictions(n: int, prevalence=(0.3, 0.1, 0.05), separation=1.5, seed=0):
    """Labels and scores where positives score higher by ``separation`` logits."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, len(prevalence))) < np.asarray(prevalence)
    logits = rng.normal(size=y.shape) + separation * y
    # Round so that ties occur, as they do with bf16 outputs and constant floors.
    return y, np.round(1 / (1 + np.exp(-logits)), 2)


def test_weighted_metrics_equal_scikit_learn_with_sample_weight_ties_included():
    y, s = _predictions(300)
    thresholds = np.array([0.5, 0.6, 0.55])
    weights = np.random.default_rng(1).integers(0, 4, size=(3, 300)).astype(float)
    got = weighted_class_metrics(y, s, s >= thresholds, weights)
    for b, w in enumerate(weights):
        for c in range(len(CLASSES)):
            kw = {"sample_weight": w}
            assert got["auroc"][b, c] == pytest.approx(roc_auc_score(y[:, c], s[:, c], **kw))
            assert got["auprc"][b, c] == pytest.approx(
                average_precision_score(y[:, c], s[:, c], **kw))
            assert got["f1"][b, c] == pytest.approx(
                f1_score(y[:, c], s[:, c] >= thresholds[c], zero_division=0, **kw))
            brier = np.average((s[:, c] - y[:, c]) ** 2, weights=w)
            assert got["brier"][b, c] == pytest.approx(brier)


def test_a_class_without_positives_is_absent_and_left_out_of_macro_averages():
    y, s = _predictions(200)
    y[:, 2] = False
    rows = evaluate_test(
        [f"r{i}" for i in range(200)], ["georgia"] * 200, y, s, np.full(3, 0.5), CLASSES,
        np.array([0.3, 0.1, 0.05]), KEY, n_boot=20)
    per_class = rows["class_metrics"].set_index("class")
    assert not per_class.loc["PAC", "present"]
    assert np.isnan(per_class.loc["PAC", "auroc"])
    macro = rows["fold_metrics"].set_index("metric")
    assert json.loads(macro.loc["macro_auroc", "classes_used"]) == ["AF", "RBBB"]
    assert macro.loc["macro_auroc", "value"] == pytest.approx(
        per_class.loc[["AF", "RBBB"], "auroc"].mean())


def test_rows_carry_exactly_the_store_schema_and_intervals_bracket_the_estimate():
    y, s = _predictions(400)
    rows = evaluate_test(
        [f"r{i}" for i in range(400)], ["georgia"] * 400, y, s, np.full(3, 0.5), CLASSES,
        np.array([0.3, 0.1, 0.05]), KEY, n_boot=100)
    assert list(rows["fold_metrics"].columns) == FOLD_METRICS_COLUMNS
    assert list(rows["class_metrics"].columns) == CLASS_METRICS_COLUMNS
    predictions = rows["predictions"]
    assert list(predictions.columns) == [
        *KEY, "record_id", "domain", "p_AF", "p_RBBB", "p_PAC", "y_AF", "y_RBBB", "y_PAC"]
    fold = rows["fold_metrics"]
    assert set(fold["metric"]) == {"macro_f1", "macro_auroc", "macro_auprc", "challenge_score",
                                   "brier"}
    assert (fold["ci_low"] <= fold["value"]).all() and (fold["value"] <= fold["ci_high"]).all()
    per_class = rows["class_metrics"]
    for m in ("f1", "auroc", "auprc"):
        assert (per_class[f"{m}_lo"] <= per_class[m]).all()
        assert (per_class[m] <= per_class[f"{m}_hi"]).all()
    assert per_class["test_prevalence"].tolist() == pytest.approx(y.mean(axis=0).tolist())


def test_intervals_narrow_as_the_test_set_grows():
    def auroc_width(n):
        y, s = _predictions(n, seed=3)
        rows = evaluate_test(range(n), ["d"] * n, y, s, np.full(3, 0.5), CLASSES,
                             np.full(3, 0.1), KEY, n_boot=200)
        af = rows["class_metrics"].set_index("class").loc["AF"]
        return af["auroc_hi"] - af["auroc_lo"]

    assert auroc_width(2000) < 0.6 * auroc_width(200)


def test_percentile_interval_covers_the_population_auroc_about_95_percent_of_the_time():
    # Population AUROC of N(1.5, 1) vs N(0, 1) scores: Phi(1.5 / sqrt(2)).
    from scipy.stats import norm

    truth = norm.cdf(1.5 / np.sqrt(2))
    covered = 0
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        y = rng.random((300, 1)) < 0.3
        s = rng.normal(size=y.shape) + 1.5 * y
        boot = weighted_class_metrics(y, s, s >= 0, bootstrap_counts(300, 200, rep))
        low, high = np.percentile(boot["auroc"][:, 0], [2.5, 97.5])
        covered += low <= truth <= high
    assert covered >= 34  # 95% nominal; binomial(40, .95) falls below 34 with p < 0.01


def test_clean_labels_are_scored_beside_noisy_ones_and_noise_lowers_auroc():
    y_clean, s = _predictions(600, separation=2.5)
    flips = np.random.default_rng(7).random(y_clean.shape) < 0.1
    y_noisy = y_clean ^ flips
    rows = evaluate_test(range(600), ["d"] * 600, y_noisy, s, np.full(3, 0.5), CLASSES,
                         np.full(3, 0.1), KEY, y_clean=y_clean, n_boot=50)
    fold = rows["fold_metrics"].set_index(["label_set", "metric"])["value"]
    assert fold["clean", "macro_auroc"] > fold["noisy", "macro_auroc"] + 0.05
    assert {"yclean_AF", "yclean_RBBB", "yclean_PAC"} <= set(rows["predictions"].columns)
    assert rows["predictions"]["yclean_AF"].tolist() == y_clean[:, 0].tolist()


def test_prevalence_floor_has_chance_auroc_and_auprc_equal_to_test_prevalence():
    y, _ = _predictions(500)
    train_prevalence = np.array([0.2, 0.15, 0.08])
    s = prevalence_scores(train_prevalence, 500)
    rows = evaluate_test(range(500), ["d"] * 500, y, s, train_prevalence, CLASSES,
                         train_prevalence, {**KEY, "arm": "prevalence", "trial_id": "prevalence"},
                         n_boot=20)
    per_class = rows["class_metrics"].set_index("class")
    assert per_class["auroc"].tolist() == pytest.approx([0.5] * 3)
    assert per_class["auprc"].tolist() == pytest.approx(y.mean(axis=0).tolist())


def test_prevalence_floor_calls_every_record_positive_so_rare_classes_get_the_all_positive_f1():
    y, _ = _predictions(500)
    train_prevalence = np.array([0.2, 0.15, 0.08])
    s = prevalence_scores(train_prevalence, 500)
    rows = evaluate_test(range(500), ["d"] * 500, y, s, prevalence_thresholds(train_prevalence), CLASSES,
                         train_prevalence, {**KEY, "arm": "prevalence", "trial_id": "prevalence"},
                         n_boot=20)
    per_class = rows["class_metrics"].set_index("class")
    pi = y.mean(axis=0)
    assert per_class["f1"].tolist() == pytest.approx((2 * pi / (1 + pi)).tolist())
    assert (per_class["f1"] > 0).all()
    assert per_class["threshold"].tolist() == pytest.approx(train_prevalence.tolist())


def test_same_seed_gives_the_same_intervals():
    y, s = _predictions(150)
    args = (range(150), ["d"] * 150, y, s, np.full(3, 0.5), CLASSES, np.full(3, 0.1), KEY)
    a = evaluate_test(*args, n_boot=30, seed=4)["class_metrics"]
    b = evaluate_test(*args, n_boot=30, seed=4)["class_metrics"]
    assert a.equals(b)


def test_mismatched_shapes_are_a_clear_error():
    y, s = _predictions(10)
    with pytest.raises(ValueError, match="shapes disagree"):
        evaluate_test(range(10), ["d"] * 10, y, s[:, :2], np.full(3, 0.5), CLASSES,
                      np.full(3, 0.1), KEY)


def test_rows_are_accepted_by_the_results_store(tmp_path):
    from heartbeatai.results import ResultsStore, ResultsWriter

    y, s = _predictions(50)
    rows = evaluate_test([f"r{i}" for i in range(50)], ["georgia"] * 50, y, s, np.full(3, 0.5),
                         CLASSES, np.full(3, 0.1), {**KEY, "study": "st"}, y_clean=y, n_boot=10)
    writer = ResultsWriter(tmp_path / "st")
    for table, frame in rows.items():
        writer.write(table, frame)
    store = ResultsStore(str(tmp_path))
    assert len(store.read("st", "class_metrics")) == 2 * len(CLASSES)
    assert store.read("st", "predictions")["yclean_PAC"].tolist() == y[:, 2].tolist()


def test_point_figures_are_those_of_the_platform_metrics():
    from heartbeatai.metrics import evaluate_predictions, tune_thresholds

    y, s = _predictions(300, seed=5)
    thresholds = tune_thresholds(y, s, y.mean(axis=0))
    expected = evaluate_predictions(y, s, thresholds, CLASSES)
    rows = evaluate_test(range(300), ["d"] * 300, y, s, thresholds, CLASSES, np.full(3, 0.1),
                         KEY, n_boot=10)
    per_class = rows["class_metrics"].set_index("class")
    for m in ("f1", "auroc", "auprc", "brier"):
        assert per_class[m].tolist() == pytest.approx(expected.per_class[m].tolist())
    macro = rows["fold_metrics"].set_index("metric")["value"]
    for m in ("macro_f1", "macro_auroc", "macro_auprc", "brier", "challenge_score"):
        assert macro[m] == pytest.approx(expected.macro[m])
