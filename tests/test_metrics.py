"""Metrics against scikit-learn and the official PhysioNet/CinC 2021 challenge score."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from heartbeatai.labels import parse_dx, scored_vocabulary
from heartbeatai.metrics import (
    challenge_score, cinc_macro_f, evaluate_predictions, f1_optimal_threshold, present_mask, tune_thresholds,
)
from real_samples import SAMPLES

# --- Official challenge-metric functions, vendored verbatim for this test only. -------
# Source: physionetchallenges/evaluation-2021, evaluate_model.py, final release (classes
# as sets of equivalent codes split from weights.csv's "a|b" headers, `sinus_rhythm =
# set(['426783006'])`, np.bool_). The search index holds that file at other commits, not
# at e2a75fc itself; `compute_modified_confusion_matrix` and `compute_challenge_metric`
# are identical in every stored version apart from np.bool -> np.bool_ and set classes.
# load_table and its number checks are simplified to reading the shipped weights.csv.


def official_load_weights(weight_file):
    table = [[cell.strip() for cell in line.split(",")] for line in open(weight_file)]
    rows = [table[0][j + 1] for j in range(len(table) - 1)]
    cols = [table[i + 1][0] for i in range(len(table) - 1)]
    values = np.array([[float(v) for v in row[1:]] for row in table[1:]], dtype=np.float64)
    rows = [set(row.split("|")) for row in rows]
    cols = [set(col.split("|")) for col in cols]
    assert rows == cols
    return rows, values


def compute_modified_confusion_matrix(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    A = np.zeros((num_classes, num_classes))
    for i in range(num_recordings):
        normalization = float(max(np.sum(np.any((labels[i, :], outputs[i, :]), axis=0)), 1))
        for j in range(num_classes):
            if labels[i, j]:
                for k in range(num_classes):
                    if outputs[i, k]:
                        A[j, k] += 1.0 / normalization
    return A


def compute_challenge_metric(weights, labels, outputs, classes, sinus_rhythm):
    num_recordings, num_classes = np.shape(labels)
    if sinus_rhythm in classes:
        sinus_rhythm_index = classes.index(sinus_rhythm)
    else:
        raise ValueError("The sinus rhythm class is not available.")
    A = compute_modified_confusion_matrix(labels, outputs)
    observed_score = np.nansum(weights * A)
    correct_outputs = labels
    A = compute_modified_confusion_matrix(labels, correct_outputs)
    correct_score = np.nansum(weights * A)
    inactive_outputs = np.zeros((num_recordings, num_classes), dtype=np.bool_)
    inactive_outputs[:, sinus_rhythm_index] = 1
    A = compute_modified_confusion_matrix(labels, inactive_outputs)
    inactive_score = np.nansum(weights * A)
    if correct_score != inactive_score:
        normalized_score = float(observed_score - inactive_score) / float(correct_score - inactive_score)
    else:
        normalized_score = 0.0
    return normalized_score


def compute_confusion_matrices(labels, outputs, normalize=False):
    num_recordings, num_classes = np.shape(labels)
    if not normalize:
        A = np.zeros((num_classes, 2, 2))
        for i in range(num_recordings):
            for j in range(num_classes):
                if labels[i, j] == 1 and outputs[i, j] == 1:  # TP
                    A[j, 1, 1] += 1
                elif labels[i, j] == 0 and outputs[i, j] == 1:  # FP
                    A[j, 1, 0] += 1
                elif labels[i, j] == 1 and outputs[i, j] == 0:  # FN
                    A[j, 0, 1] += 1
                elif labels[i, j] == 0 and outputs[i, j] == 0:  # TN
                    A[j, 0, 0] += 1
                else:
                    raise ValueError("Error in computing the confusion matrix.")
    return A


def compute_f_measure(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    A = compute_confusion_matrices(labels, outputs)
    f_measure = np.zeros(num_classes)
    for k in range(num_classes):
        tp, fp, fn, tn = A[k, 1, 1], A[k, 1, 0], A[k, 0, 1], A[k, 0, 0]
        if 2 * tp + fp + fn:
            f_measure[k] = float(2 * tp) / float(2 * tp + fp + fn)
        else:
            f_measure[k] = float("nan")
    if np.any(np.isfinite(f_measure)):
        macro_f_measure = np.nanmean(f_measure)
    else:
        macro_f_measure = float("nan")
    return macro_f_measure, f_measure


# ---------------------------------------------------------------------------------------


def official_classes():
    weights_file = resources.files("heartbeatai") / "package_data" / "evaluation-2021" / "weights.csv"
    return official_load_weights(str(weights_file))


def official_encode(records: list[set[str]]) -> np.ndarray:
    """The official `load_labels`: a record is labelled with a class when any of its codes is
    among the class's equivalent codes."""
    classes, _ = official_classes()
    return np.array([[bool(c & r) for c in classes] for r in records], dtype=bool)


def official_f_measure(labels_by_record: list[set[str]], outputs_by_record: list[set[str]]) -> float:
    return compute_f_measure(official_encode(labels_by_record), official_encode(outputs_by_record))[0]


def official_score(labels_by_record: list[set[str]], outputs_by_record: list[set[str]]) -> float:
    """Run the vendored official code on records given as sets of SNOMED codes."""
    weights_file = resources.files("heartbeatai") / "package_data" / "evaluation-2021" / "weights.csv"
    classes, weights = official_load_weights(str(weights_file))
    encode = lambda records: np.array([[bool(c & r) for c in classes] for r in records], dtype=bool)  # noqa: E731
    return compute_challenge_metric(weights, encode(labels_by_record), encode(outputs_by_record), classes, {"426783006"})


def test_challenge_score_equals_the_official_code_on_a_worked_example():
    rng = np.random.default_rng(7)
    vocabulary = scored_vocabulary()
    # Our columns: the scored classes shuffled, RBBB given by its equivalent code, and
    # one unscored class (ventricular ectopics) that the official metric never sees.
    codes = [c.code for c in vocabulary.classes]
    codes[codes.index("713427006")] = "59118001"
    codes = list(rng.permutation(codes)) + ["164884008"]
    n = 60
    y_true = rng.random((n, len(codes))) < 0.12
    y_pred = y_true ^ (rng.random((n, len(codes))) < 0.15)  # a model with some errors
    y_true[:5] = False  # records with no label at all
    y_pred[5:8] = False  # records with no call at all

    as_sets = lambda m: [{codes[j] for j in np.flatnonzero(row)} for row in m]  # noqa: E731
    expected = official_score(as_sets(y_true), as_sets(y_pred))
    assert challenge_score(y_true, y_pred, codes) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_cinc_macro_f_equals_the_official_code_on_a_worked_example():
    rng = np.random.default_rng(11)
    vocabulary = scored_vocabulary()
    codes = [c.code for c in vocabulary.classes]
    codes[codes.index("713427006")] = "59118001"  # RBBB by its equivalent code
    codes = list(rng.permutation(codes)) + ["164884008"]  # and one unscored class
    n = 80
    y_true = rng.random((n, len(codes))) < 0.1
    y_true[:, codes.index("164889003")] = False  # AF absent from the set ...
    y_pred = y_true ^ (rng.random((n, len(codes))) < 0.08)  # ... but called: F = 0 counts
    y_pred[:, codes.index("426783006")] = False  # NSR neither labelled nor called ...
    y_true[:, codes.index("426783006")] = False  # ... is left out
    as_sets = lambda m: [{codes[j] for j in np.flatnonzero(row)} for row in m]  # noqa: E731
    expected = official_f_measure(as_sets(y_true), as_sets(y_pred))
    assert cinc_macro_f(y_true, y_pred, codes) == pytest.approx(expected, abs=1e-12)
    # The present-class average leaves the falsely called absent classes out, so it is higher.
    result = evaluate_predictions(y_true, y_pred.astype(float), np.full(len(codes), 0.5),
                                  [str(c) for c in codes])
    assert result.macro["cinc_macro_f"] == pytest.approx(expected, abs=1e-12)
    assert result.macro["macro_f1"] > expected


def test_cinc_macro_f_equals_the_official_code_on_the_real_samples_labels():
    """Labels read as the platform reads them (parse_dx, the vocabulary's equivalences) against
    the official reading of the same headers' raw `# Dx:` codes."""
    headers = sorted((SAMPLES / "challenge2021").rglob("*.hea"))
    assert len(headers) >= 5
    raw = []
    for header in headers:
        # helper_code.get_labels of the 2021 challenge: the `#Dx: ` line, split on commas.
        dx = next(line.split(": ")[1] for line in header.read_text().splitlines() if line.startswith("#Dx"))
        raw.append({code.strip() for code in dx.split(",") if code.strip()})
    vocabulary = scored_vocabulary(include_st=True)
    y_true = np.stack([vocabulary.multi_hot(sorted(codes)) for codes in raw])
    rng = np.random.default_rng(3)
    for _ in range(5):
        y_pred = y_true ^ (rng.random(y_true.shape) < 0.1)
        outputs = [{vocabulary.codes[j] for j in np.flatnonzero(row)} for row in y_pred]
        expected = official_f_measure(raw, outputs)
        platform_labels = np.stack([vocabulary.multi_hot(parse_dx(",".join(sorted(codes)))) for codes in raw])
        assert cinc_macro_f(platform_labels, y_pred, vocabulary.codes) == pytest.approx(expected, abs=1e-12)


def test_challenge_score_hand_checked_cases():
    # One record, AF called AFL: the union {AF, AFL} splits the unit of credit, so
    # observed = W[AF, AFL] / 2 = 0.25; always-sinus gets W[AF, NSR] / 2 = 0.125; a
    # perfect call 1. Score (0.25 - 0.125) / (1 - 0.125) = 1/7.
    codes = ["164889003", "164890007", "426783006"]  # AF, AFL, NSR
    assert challenge_score(np.array([[1, 0, 0]]), np.array([[0, 1, 0]]), codes) == pytest.approx(1 / 7)
    # Record 1 AF called AF+NSR (credit split in halves), record 2 NSR with no call:
    # observed 0.5 * 1 + 0.5 * 0.25, correct 2, inactive 0.5 * 0.25 + 1 -> -0.5 / 0.875.
    y_true = np.array([[1, 0, 0], [0, 0, 1]])
    y_pred = np.array([[1, 0, 1], [0, 0, 0]])
    assert challenge_score(y_true, y_pred, codes) == pytest.approx(-4 / 7)
    assert challenge_score(y_true, y_true, codes) == pytest.approx(1.0)


def test_f1_optimal_thresholds_are_those_of_scikit_learns_precision_recall_curve():
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(2, 300))
        y = rng.random(n) < rng.uniform(0.02, 0.6)
        y[rng.integers(n)] = True
        s = np.round(rng.random(n) + 0.5 * y, int(rng.integers(1, 4)))  # rounded: ties at every size
        precision, recall, candidates = precision_recall_curve(y, s)
        precision, recall = precision[:-1], recall[:-1]
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        assert f1_optimal_threshold(y, s) == candidates[int(np.argmax(f1))], trial


def test_tuned_thresholds_maximise_validation_f1_and_absent_classes_call_their_training_prevalence():
    rng = np.random.default_rng(0)
    y = rng.random((80, 4)) < 0.3
    y[:, 2:] = False  # absent: no validation positive
    scores = np.clip(0.4 * y + rng.random((80, 4)) * 0.7, 0, 1)
    thresholds = tune_thresholds(y, scores, np.array([0.3, 0.3, 0.1, 0.0]))
    # The fallback calls the training prevalence's share of the validation records positive...
    assert np.mean(scores[:, 2] >= thresholds[2]) == pytest.approx(0.1, abs=1 / 80)
    # ... and a class never seen in training is never called.
    assert thresholds[3] == np.inf and not np.any(scores[:, 3] >= thresholds[3])
    for c in range(2):
        best = max(f1_score(y[:, c], scores[:, c] >= t) for t in np.unique(scores[:, c]))
        assert f1_score(y[:, c], scores[:, c] >= thresholds[c]) == pytest.approx(best)


def test_evaluate_predictions_matches_scikit_learn_per_class_and_macro():
    rng = np.random.default_rng(1)
    classes = ["AF", "RBBB", "NSR", "PVC"]
    y = rng.random((100, 4)) < 0.25
    scores = np.round(np.clip(0.35 * y + rng.random((100, 4)) * 0.65, 0, 1), 1)  # ties, as calibrated outputs have
    thresholds = np.array([0.3, 0.5, 0.6, 0.4])
    result = evaluate_predictions(y, scores, thresholds, classes)
    table = result.per_class.set_index("class")
    for c, name in enumerate(classes):
        assert table.loc[name, "f1"] == pytest.approx(f1_score(y[:, c], scores[:, c] >= thresholds[c]))
        assert table.loc[name, "auroc"] == pytest.approx(roc_auc_score(y[:, c], scores[:, c]))
        assert table.loc[name, "auprc"] == pytest.approx(average_precision_score(y[:, c], scores[:, c]))
        assert table.loc[name, "brier"] == pytest.approx(brier_score_loss(y[:, c], scores[:, c]))
        assert table.loc[name, "positives"] == y[:, c].sum()
    assert result.macro["macro_auroc"] == pytest.approx(roc_auc_score(y, scores, average="macro"))
    assert result.macro["macro_auprc"] == pytest.approx(average_precision_score(y, scores, average="macro"))
    assert result.macro["macro_f1"] == pytest.approx(f1_score(y, scores >= thresholds, average="macro"))
    assert result.macro["classes_used"] == classes


def test_absent_classes_are_reported_absent_and_left_out_of_macro_averages():
    rng = np.random.default_rng(2)
    classes = ["AF", "RBBB", "PVC", "NSR"]
    y = rng.random((50, 4)) < 0.3
    y[:, 2] = False  # PVC never positive (as in CPSC under the scored set)
    y[:, 3] = True  # NSR never negative
    scores = rng.random((50, 4))
    result = evaluate_predictions(y, scores, np.full(4, 0.5), classes)
    table = result.per_class.set_index("class")
    assert list(present_mask(y)) == [True, True, False, False]
    assert not table.loc["PVC", "present"] and np.isnan(table.loc["PVC", "auroc"])
    assert result.macro["classes_used"] == ["AF", "RBBB"]
    assert result.macro["macro_auroc"] == pytest.approx(roc_auc_score(y[:, :2], scores[:, :2], average="macro"))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        tune_thresholds(np.zeros((4, 2), bool), np.zeros((4, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="class codes"):
        challenge_score(np.zeros((4, 2), bool), np.zeros((4, 2), bool), ["164889003"])
