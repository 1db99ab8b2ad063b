"""Class metrics under record weights: one vectorised pass for a point estimate and every
bootstrap replicate at once.

A replicate is a vector of record weights (multinomial counts, or any positive weights);
every metric is computed as a weighted metric, so a bootstrap of B replicates is a few
matrix products and one sort per class instead of B calls to scikit-learn. Tests pin the
weighted metrics to scikit-learn's with `sample_weight`. Definitions follow
`heartbeatai.metrics`: a class is present with at least one positive and one negative
(nan otherwise); F1 scores fixed calls; AUPRC is average precision with scikit-learn's
step rule.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from heartbeatai.analysis.intervals import CI_LEVEL
from heartbeatai.metrics import challenge_credits


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
    """The challenge score under each row of record weights (B, N): a ratio of weighted sums."""
    observed, correct, baseline = (np.atleast_2d(counts) @ challenge_credits(y_true, predicted, codes).T).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(correct != baseline, (observed - baseline) / (correct - baseline), 0.0)


def percentile_interval(replicates: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval at CI_LEVEL, ignoring nan replicates."""
    tail = 100 * (1 - CI_LEVEL) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices stay nan
        low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=axis)
    return low, high
