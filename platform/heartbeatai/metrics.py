"""Classification metrics: pure functions of label, score and decision arrays.

Conventions shared with the study analysis (analysis/evaluation.py, analysis/weighted_metrics.py):
- a class is *present* in an evaluated set with at least one positive and one negative;
  per-class figures of absent classes are NaN and macro averages run over present
  classes only, reported as `classes_used`;
- a record is called positive for a class when its score >= the class's threshold;
- AUPRC is average precision (scikit-learn's step rule, no interpolation);
- scores are probabilities (sigmoid outputs), so the Brier score is meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from heartbeatai.labels import challenge_weights, scored_vocabulary

# The challenge's "inactive" reference classifier calls every record sinus rhythm.
SINUS_RHYTHM = "426783006"


def present_mask(y_true: np.ndarray) -> np.ndarray:
    """(C,) bool: the class has at least one positive and one negative (data.folds.present_classes
    gives their names)."""
    y = np.asarray(y_true, dtype=bool)
    return y.any(axis=0) & (~y).any(axis=0)


def tune_thresholds(y_true: np.ndarray, scores: np.ndarray, train_prevalence: np.ndarray) -> np.ndarray:
    """Per-class F1-optimal thresholds on a validation set.

    Each candidate is a score the validation set attains, so `score >= threshold`
    reproduces the F1 found here on that set. A class that is not present in the
    validation set (no positive, or no negative) has no F1 to optimise: its threshold
    calls the class's training prevalence positive on the validation scores (the
    prevalence floor's rule), never a silent 0.5, which would call none of a rare class
    and all of a common one. A class never seen in training is never called.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    prevalence = np.asarray(train_prevalence, dtype=float)
    _check_shapes(y, s)
    if prevalence.shape != (y.shape[1],):
        raise ValueError(f"need one training prevalence per class ({y.shape[1]}), got {prevalence.shape}")
    present = present_mask(y)
    thresholds = np.empty(y.shape[1])
    for c in range(y.shape[1]):
        if present[c]:
            thresholds[c] = f1_optimal_threshold(y[:, c], s[:, c])
        else:
            thresholds[c] = fallback_threshold(s[:, c], prevalence[c])
    return thresholds


def f1_optimal_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The attained score whose `s >= threshold` calls maximise F1 (ties: the lowest such score).

    scikit-learn's precision_recall_curve plus argmax, op for op (every distinct score a
    candidate, ascending; F1 as 2PR / (P + R)), so thresholds are bitwise those of earlier releases; written out because importing scikit-learn costs every training worker
    about 2 s (tests/test_metrics.py checks it against scikit-learn).
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s_desc, y_desc = s[order], y[order].astype(float)
    ends = np.r_[np.flatnonzero(np.diff(s_desc)), len(s_desc) - 1]  # the last record of each distinct score
    tps = np.cumsum(y_desc)[ends]
    called = 1.0 + ends
    precision, recall = (tps / called)[::-1], (tps / tps[-1])[::-1]
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(s_desc[ends][::-1][int(np.argmax(f1))])


def fallback_threshold(scores: np.ndarray, prevalence: float) -> float:
    """The score that calls a share `prevalence` of these records positive (inf: none)."""
    if prevalence <= 0 or len(scores) == 0:
        return float("inf")
    return float(np.quantile(scores, 1.0 - min(prevalence, 1.0), method="higher"))


def weighted_class_metrics(
    y_true: np.ndarray, scores: np.ndarray, predicted: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-class F1, AUROC, AUPRC and Brier under record weights.

    y_true (N, C) bool, scores (N, C), predicted (N, C) bool (the calls F1 scores:
    ``scores >= thresholds``, or calls pooled from runs with their own thresholds),
    weights (B, N): one row per weighting (a row of ones is the plain metric). Returns
    name -> (B, C) arrays, nan where a weighting leaves a class without a positive or
    without a negative; "positives" and "present" come along.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    predicted = np.asarray(predicted, dtype=bool)

    positives = w @ y
    negatives = w @ ~y
    present = (positives > 0) & (negatives > 0)
    tp = w @ (y & predicted)
    fp = w @ (~y & predicted)
    f1 = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), np.finfo(float).tiny)
    brier = (w @ (s - y) ** 2) / w.sum(axis=1, keepdims=True)

    auroc = np.empty_like(positives)
    auprc = np.empty_like(positives)
    for c in range(y.shape[1]):
        auroc[:, c], auprc[:, c] = _weighted_ranking(y[:, c], s[:, c], w)

    nan_unless_present = lambda values: np.where(present, values, np.nan)  # noqa: E731
    return {
        "f1": nan_unless_present(f1),
        "auroc": nan_unless_present(auroc),
        "auprc": nan_unless_present(auprc),
        "brier": nan_unless_present(brier),
        "positives": positives,
        "present": present,
    }


def _weighted_ranking(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC (ties count one half) and average precision of one class, per weighting row."""
    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    # Records with equal scores form one threshold step, as in scikit-learn's curves.
    starts = np.flatnonzero(np.r_[True, s_desc[1:] != s_desc[:-1]])
    w_desc = w[:, order]
    pos = np.add.reduceat(w_desc * y[order], starts, axis=1)
    neg = np.add.reduceat(w_desc * ~y[order], starts, axis=1)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
        auroc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        tp = np.cumsum(pos, axis=1)
        called = tp + np.cumsum(neg, axis=1)
        precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        auprc = (pos * precision).sum(axis=1) / n_pos
    return auroc, auprc


@dataclass(frozen=True)
class EvaluationResult:
    per_class: pd.DataFrame  # class, positives, negatives, present, f1, auroc, auprc, brier, threshold
    macro: dict  # macro_f1, macro_auroc, macro_auprc, brier, challenge_score, classes_used


def evaluate_predictions(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    classes: Sequence[str],
) -> EvaluationResult:
    """Per-class and macro metrics of probabilities `scores` (N, C) against `y_true`.

    `classes` are the vocabulary's abbreviations (RBBB, AF, ...); the challenge score
    uses those among the 26 scored classes and ignores the rest.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    _check_shapes(y, s)
    if t.shape != (y.shape[1],) or len(classes) != y.shape[1]:
        raise ValueError(f"need one threshold and one class name per column ({y.shape[1]}), "
                         f"got {t.shape[0] if t.ndim else t} thresholds and {len(classes)} names")
    predicted = s >= t
    present = present_mask(y)
    # One vectorised pass (the same values as scikit-learn's per-class scorers, ties included:
    # tests/test_metrics.py), instead of four validated sklearn calls per class and epoch.
    figures = weighted_class_metrics(y, s, predicted, np.ones((1, len(y))))
    rows = []
    for c, name in enumerate(classes):
        row = {
            "class": name,
            "positives": int(y[:, c].sum()),
            "negatives": int((~y[:, c]).sum()),
            "present": bool(present[c]),
            "f1": np.nan,
            "auroc": np.nan,
            "auprc": np.nan,
            "brier": np.nan,
            "threshold": float(t[c]),
        }
        if present[c]:
            row.update({name: float(figures[name][0, c]) for name in ("f1", "auroc", "auprc", "brier")})
        rows.append(row)
    per_class = pd.DataFrame(rows)
    used = per_class[per_class["present"]]
    mean = lambda column: float(used[column].mean()) if len(used) else float("nan")  # noqa: E731
    macro = {
        "macro_f1": mean("f1"),
        "macro_auroc": mean("auroc"),
        "macro_auprc": mean("auprc"),
        "brier": mean("brier"),
        "challenge_score": challenge_score(y, predicted, snomed_codes(classes)),
        "cinc_macro_f": cinc_macro_f(y, predicted, snomed_codes(classes)),
        "classes_used": used["class"].tolist(),
    }
    return EvaluationResult(per_class=per_class, macro=macro)


def snomed_codes(classes: Sequence[str]) -> list[str]:
    """SNOMED codes of class abbreviations; unknown names pass through unchanged."""
    by_abbr = {info.abbr: info.code for info in scored_vocabulary(include_st=True).classes}
    return [by_abbr.get(name, name) for name in classes]


def challenge_score(y_true: np.ndarray, y_pred: np.ndarray, class_codes: Sequence[str]) -> float:
    """The PhysioNet/CinC 2021 challenge metric, as `evaluate_model.py` computes it.

    Columns are placed into the 26 scored classes by code (equivalent codes merge, a
    class given twice is the OR of its columns); columns outside the 26 are ignored
    and scored classes without a column count as neither labelled nor called. Each
    record spreads one unit of credit over the union of its labels and calls; the
    weighted credit is normalised so the true labels score 1 and always calling sinus
    rhythm scores 0.
    """
    observed, correct, baseline = challenge_credits(y_true, y_pred, class_codes).sum(axis=1)
    if correct == baseline:
        return 0.0
    return float((observed - baseline) / (correct - baseline))


def cinc_macro_f(y_true: np.ndarray, y_pred: np.ndarray, class_codes: Sequence[str]) -> float:
    """The PhysioNet/CinC 2021 macro F-measure, as `evaluate_model.py`'s `compute_f_measure`.

    Over the 26 scored classes (columns placed as for the challenge score): per class
    2TP / (2TP + FP + FN), a class with no label and no call left out (nan), the rest
    averaged. A class absent from the test set but called counts as F = 0, which is why
    this is lower than `macro_f1`, the average over the classes present in the set.
    """
    tp, fp, fn = cinc_f_counts(y_true, y_pred, class_codes).sum(axis=1)
    return float(macro_f_of_counts(tp, fp, fn))


def cinc_f_counts(y_true: np.ndarray, y_pred: np.ndarray, class_codes: Sequence[str]) -> np.ndarray:
    """(3, N, 26) per-record true-positive, false-positive and false-negative indicators of the
    26 scored classes: the macro F-measure of record-weighted (bootstrap) sums is that of
    the weighted counts."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    _check_shapes(y, p)
    if len(class_codes) != y.shape[1]:
        raise ValueError(f"{len(class_codes)} class codes for {y.shape[1]} columns")
    codes, _ = challenge_weights()
    labels = _scored_columns(y, class_codes, codes)
    calls = _scored_columns(p, class_codes, codes)
    return np.stack([labels & calls, ~labels & calls, labels & ~calls]).astype(float)


def macro_f_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Mean over the last axis of 2TP / (2TP + FP + FN), classes with a zero denominator left out."""
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(denominator > 0, 2 * tp / denominator, np.nan)
        counted = (denominator > 0).sum(axis=-1)
        return np.where(counted > 0, np.nansum(f, axis=-1) / np.maximum(counted, 1), np.nan)


def challenge_credits(y_true: np.ndarray, y_pred: np.ndarray, class_codes: Sequence[str]) -> np.ndarray:
    """(3, N) per-record weighted credit of the calls, of the true labels and of the inactive
    classifier: the challenge score is (sum obs - sum base) / (sum correct - sum base), so a
    record-weighted (bootstrap) score is the same ratio of weighted sums."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    _check_shapes(y, p)
    if len(class_codes) != y.shape[1]:
        raise ValueError(f"{len(class_codes)} class codes for {y.shape[1]} columns")
    codes, weights = challenge_weights()
    labels = _scored_columns(y, class_codes, codes)
    outputs = _scored_columns(p, class_codes, codes)
    inactive = np.zeros_like(labels)
    inactive[:, codes.index(SINUS_RHYTHM)] = True
    return np.stack([_record_credit(labels, calls, weights) for calls in (outputs, labels, inactive)])


def _scored_columns(matrix: np.ndarray, class_codes: Sequence[str], scored: list[str]) -> np.ndarray:
    vocabulary = scored_vocabulary()
    out = np.zeros((matrix.shape[0], len(scored)), dtype=bool)
    index = {code: i for i, code in enumerate(scored)}
    for column, code in enumerate(class_codes):
        target = index.get(vocabulary.canonical(str(code)))
        if target is not None:
            out[:, target] |= matrix[:, column]
    return out


def _record_credit(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per record, its share of sum(W * A) for the official modified confusion matrix A."""
    union = np.maximum((labels | outputs).sum(axis=1), 1).astype(float)
    weights = np.nan_to_num(weights)
    return np.einsum("ij,jk,ik->i", labels / union[:, None], weights, outputs.astype(float))


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, C) arrays of one shape, got {a.shape} and {b.shape}")
