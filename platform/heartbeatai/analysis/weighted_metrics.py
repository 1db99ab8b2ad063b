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
from heartbeatai.metrics import macro_f_of_counts, challenge_credits, cinc_f_counts


def bootstrap_counts(n: int, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """(n_boot, n) multinomial draw counts: how often each record enters each replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def challenge_scores(
    y_true: np.ndarray, predicted: np.ndarray, codes: list[str], counts: np.ndarray
) -> np.ndarray:
    """The challenge score under each row of record weights (B, N): a ratio of weighted sums."""
    observed, correct, baseline = (np.atleast_2d(counts) @ challenge_credits(y_true, predicted, codes).T).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(correct != baseline, (observed - baseline) / (correct - baseline), 0.0)


def cinc_macro_fs(y_true: np.ndarray, predicted: np.ndarray, codes: list[str], counts: np.ndarray) -> np.ndarray:
    """The CinC macro F-measure under each row of record weights (B, N): F of weighted counts."""
    tp, fp, fn = np.einsum("bn,knc->kbc", np.atleast_2d(counts), cinc_f_counts(y_true, predicted, codes))
    return macro_f_of_counts(tp, fp, fn)


def percentile_interval(replicates: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval at CI_LEVEL, ignoring nan replicates."""
    tail = 100 * (1 - CI_LEVEL) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices stay nan
        low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=axis)
    return low, high
