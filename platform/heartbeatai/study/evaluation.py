"""Test-set evaluation: predictions -> results-store rows with bootstrap intervals.

Evaluation is its own stage over saved predictions (as in ecg_ptbxl_benchmarking), so it
can be rerun without retraining. Intervals are percentile bootstrap intervals that
resample *records*: a replicate is a vector of multinomial counts over the test records,
and every metric is computed as a count-weighted metric. That turns the whole bootstrap
into a few matrix products and one sort per class instead of ``n_boot`` calls to
scikit-learn; a test pins the weighted metrics to scikit-learn's with ``sample_weight``.

Per-class definitions are those of `heartbeatai.metrics`: a class is *present* in an
evaluated set with at least one positive and one negative; F1 uses the class's fixed
threshold (``score >= threshold``); AUPRC is average precision (scikit-learn's step
rule, no interpolation); macro figures average the present classes. Inside a bootstrap
replicate the macro averages run over the classes present in the full set
(``classes_used``), skipping any that a replicate happens to leave without positives;
a rare class's own interval is likewise taken over the replicates that drew one of its
positives (with a handful of positives, read it as optimistic).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from heartbeatai.metric_names import CLASS_METRICS, FOLD_METRICS
from heartbeatai.metrics import challenge_score, class_codes

CI_LEVEL = 0.95


def prevalence_scores(train_prevalence: np.ndarray, n: int) -> np.ndarray:
    """The floor predictor: every record scored with the training prevalence of each class.

    Its AUROC is 0.5 and its AUPRC the test prevalence, so every model has a figure
    that knows nothing but the label frequencies to stand against. Thresholded at the
    prevalence itself (`prevalence_thresholds`) it calls every record positive, the best F1
    a constant score can reach (2 pi / (1 + pi) at test prevalence pi); at 0.5 it would call
    none of the rarer classes and score F1 = 0, a floor no model has to climb.
    """
    prevalence = np.asarray(train_prevalence, dtype=float)
    return np.broadcast_to(prevalence, (n, prevalence.size)).copy()


def prevalence_thresholds(train_prevalence: np.ndarray) -> np.ndarray:
    """The floor's thresholds: each class's training prevalence, so `score >= threshold` calls all."""
    return np.asarray(train_prevalence, dtype=float).copy()


def bootstrap_counts(n: int, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """(n_boot, n) multinomial draw counts: how often each record enters each replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


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


def challenge_scores(
    y_true: np.ndarray, predicted: np.ndarray, codes: list[str], counts: np.ndarray
) -> np.ndarray:
    """The challenge score of each count-weighted replicate (the metric has no weights)."""
    records = np.arange(y_true.shape[0])
    out = np.empty(counts.shape[0])
    for b, row in enumerate(counts.astype(int)):
        drawn = np.repeat(records, row)
        out[b] = challenge_score(y_true[drawn], predicted[drawn], codes)
    return out


def percentile_interval(replicates: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval at CI_LEVEL, ignoring nan replicates."""
    tail = 100 * (1 - CI_LEVEL) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices stay nan
        low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=axis)
    return low, high


def evaluate_test(
    record_ids: Sequence[str],
    domains: Sequence[str],
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    classes: Sequence[str],
    train_prevalence: np.ndarray,
    key: Mapping[str, Any],
    y_clean: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    split: str = "test",
) -> dict[str, pd.DataFrame]:
    """Rows of the predictions, fold_metrics and class_metrics tables for one tested run.

    ``key`` is the run's results-store key (study, protocol, fold_id, arm, seed,
    selection, trial_id). ``y_true`` are the dataset's (possibly noisy) labels; where
    the true labels are known (the synthetic manifest) pass them as ``y_clean`` and every
    metric is reported against both (label_set "noisy" and "clean"), on the same
    bootstrap replicates, so the effect of label noise is measured directly.
    """
    classes = list(classes)
    y_noisy = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    n, n_classes = scores.shape
    if y_noisy.shape != scores.shape or thresholds.shape != (n_classes,) or len(classes) != n_classes:
        raise ValueError(
            f"shapes disagree: y_true {y_noisy.shape}, scores {scores.shape}, "
            f"thresholds {thresholds.shape}, {len(classes)} classes"
        )
    if n == 0:
        raise ValueError("no records to evaluate")
    label_sets = {"noisy": y_noisy}
    if y_clean is not None:
        label_sets["clean"] = np.asarray(y_clean, dtype=bool)

    counts = bootstrap_counts(n, n_boot, seed)
    predicted = scores >= thresholds
    fold_rows, class_rows = [], []
    for label_set, y in label_sets.items():
        point = weighted_class_metrics(y, scores, predicted, np.ones((1, n)))
        boot = weighted_class_metrics(y, scores, predicted, counts)
        used = point["present"][0]
        macro_point = macro_metrics(point, y, predicted, classes, np.ones((1, n)))
        macro_boot = macro_metrics(boot, y, predicted, classes, counts, used)
        base = {**key, "split": split, "label_set": label_set}
        for metric in FOLD_METRICS:
            low, high = percentile_interval(macro_boot[metric])
            fold_rows.append({
                **base, "metric": metric, "value": float(macro_point[metric][0]),
                "ci_low": float(low), "ci_high": float(high),
                "classes_used": json.dumps([c for c, u in zip(classes, used) if u]),
            })
        intervals = {m: percentile_interval(boot[m]) for m in CLASS_METRICS}
        for c, abbr in enumerate(classes):
            row = {
                **base, "class": abbr, "positives": int(point["positives"][0, c]),
                "train_prevalence": float(train_prevalence[c]),
                "test_prevalence": float(point["positives"][0, c] / n),
                "present": bool(used[c]),
            }
            for metric in CLASS_METRICS:
                row[metric] = float(point[metric][0, c])
                row[f"{metric}_lo"] = float(intervals[metric][0][c])
                row[f"{metric}_hi"] = float(intervals[metric][1][c])
            row["brier"] = float(point["brier"][0, c])
            row["threshold"] = float(thresholds[c])
            class_rows.append(row)

    return {
        "predictions": prediction_rows(record_ids, domains, scores, y_noisy, classes, key, y_clean),
        "fold_metrics": pd.DataFrame(fold_rows),
        "class_metrics": pd.DataFrame(class_rows),
    }


def macro_metrics(
    per_class: dict[str, np.ndarray],
    y_true: np.ndarray,
    predicted: np.ndarray,
    classes: Sequence[str],
    counts: np.ndarray,
    used: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The fold_metrics figures per weighting row: name -> (B,).

    ``per_class`` is `weighted_class_metrics` under ``counts``. Macro averages run over
    ``used`` (default: the classes present under the first weighting), the challenge
    score over every class, with the replicate's records drawn ``counts`` times.
    """
    used = per_class["present"][0] if used is None else used
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate with no class left
        for m in (*CLASS_METRICS, "brier"):
            name = "brier" if m == "brier" else f"macro_{m}"
            out[name] = (np.nanmean(per_class[m][:, used], axis=1) if used.any()
                         else np.full(counts.shape[0], np.nan))
    out["challenge_score"] = challenge_scores(y_true, predicted, class_codes(classes), counts)
    return out


def prediction_rows(
    record_ids: Sequence[str],
    domains: Sequence[str],
    scores: np.ndarray,
    y_true: np.ndarray,
    classes: Sequence[str],
    key: Mapping[str, Any],
    y_clean: np.ndarray | None = None,
) -> pd.DataFrame:
    """The wide predictions table: key, record_id, domain, p_<ABBR>, y_<ABBR>[, yclean_<ABBR>]."""
    columns: dict[str, Any] = {name: [value] * len(record_ids) for name, value in key.items()}
    columns["record_id"] = [str(r) for r in record_ids]
    columns["domain"] = [str(d) for d in domains]
    for c, abbr in enumerate(classes):
        columns[f"p_{abbr}"] = np.asarray(scores[:, c], dtype=float)
    for c, abbr in enumerate(classes):
        columns[f"y_{abbr}"] = np.asarray(y_true[:, c], dtype=bool)
    if y_clean is not None:
        for c, abbr in enumerate(classes):
            columns[f"yclean_{abbr}"] = np.asarray(y_clean[:, c], dtype=bool)
    return pd.DataFrame(columns)


def prediction_classes(predictions: pd.DataFrame) -> list[str]:
    """Class abbreviations of a predictions frame, in column order."""
    return [c[2:] for c in predictions.columns if c.startswith("p_")]


def run_arrays(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record_ids, y (N, C) bool, scores (N, C)) of one run's prediction rows, by record id."""
    rows = predictions.sort_values("record_id", kind="stable")
    y = rows[[f"y_{c}" for c in classes]].to_numpy(dtype=bool)
    scores = rows[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    return rows["record_id"].to_numpy(dtype=str), y, scores
