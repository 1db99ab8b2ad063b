"""Intervals of macro averages over one fixed class set, by linearisation.

A macro figure averages the classes present in the whole test set (DESIGN.md, Folds). A
record bootstrap cannot keep that set fixed: a replicate of 200 records leaves a class
with one positive without any in about a third of the draws, and dropping the class from
those replicates (v1) or the replicates themselves makes the interval far too narrow. The
influence-function (infinitesimal jackknife) variance needs no replicates: each class's
estimate is, to first order, a sum over records of its influence values, so the macro
average is the sum of their class means, and its variance the sum of squares over records.
That keeps the class set fixed and counts the covariance between classes that share records.

The influence values' own variance collapses for a class with a handful of positives (as
DeLong's does), so each class's variance is floored at its small-sample estimate: Hanley &
McNeil's for the AUROC, Boyd et al.'s AP(1 - AP)/n_pos for the average precision, the
Jaccard-binomial one for F1 (intervals.py), added under independence where it exceeds the
influence variance. `python -m benchmarks statistics` measures the coverage.

Macro AUPRC alone averages a smaller set: the present classes with at least
`MACRO_AUPRC_MIN_POSITIVES` test positives (`auprc_classes`), for the bias explained there.

Arrays are (N, C): records by classes; `used` marks the fixed class set.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from heartbeatai.analysis.intervals import CI_LEVEL, Interval, delong_components, hanley_mcneil_variance
from heartbeatai.metric_names import MACRO_AUPRC_MIN_POSITIVES


def auroc_influence(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(AUROC, influence per record, small-sample variance floor) of one class."""
    m, n = int(y.sum()), int((~y).sum())
    auc, v10, v01 = delong_components(y, s)
    psi = np.empty(len(y))
    psi[y] = (v10 - auc) / m
    psi[~y] = (v01 - auc) / n
    floor = hanley_mcneil_variance(float(np.clip(auc, 0.5 / (m * n), 1 - 0.5 / (m * n))), m, n)
    return auc, psi, floor


def f1_influence(y: np.ndarray, called: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(F1, influence per record, variance floor) of fixed calls: F1 = 2a / (2a + b), with a
    the share of true positives and b that of false positives and negatives."""
    n = len(y)
    a_i = (y & called).astype(float)
    b_i = (y ^ called).astype(float)
    a, b = a_i.mean(), b_i.mean()
    if 2 * a + b == 0:
        return np.nan, np.zeros(n), 0.0
    f1 = 2 * a / (2 * a + b)
    psi = 2 * (a_i * b - a * b_i) / (2 * a + b) ** 2 / n
    m = a_i.sum() + b_i.sum()  # records positive or called positive
    jaccard = a_i.sum() / m
    floor = 4 * jaccard * (1 - jaccard) / (m * (1 + jaccard) ** 4)
    return float(f1), psi, float(floor)


def average_precision_influence(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(AP, influence per record, variance floor) of one class.

    AP = (1/m) sum over positives k of prec_k, prec_k the precision among records scored
    >= s_k. Differentiating in record weights: IF_i = (1/m) [y_i (prec_i - AP) +
    sum over positives k with s_k <= s_i of (y_i - prec_k) / D_k], D_k the records scored >= s_k.
    """
    n = len(y)
    m = int(y.sum())
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # Ties form one threshold step, as in scikit-learn's average precision.
    step_end = np.r_[np.flatnonzero(s_desc[1:] != s_desc[:-1]), n - 1]
    step_of = np.searchsorted(step_end, np.arange(n))
    tp_step = np.cumsum(y_desc)[step_end]
    d_step = step_end + 1.0
    prec_step = tp_step / d_step
    prec = prec_step[step_of]
    ap = float(np.sum(prec[y_desc]) / m)
    # For each record, the positives k at or below its score are those in steps >= its own.
    pos_per_step = np.bincount(step_of, weights=y_desc.astype(float), minlength=len(step_end))
    inv_d = pos_per_step / d_step
    prec_over_d = pos_per_step * prec_step / d_step
    tail_inv_d = np.cumsum(inv_d[::-1])[::-1][step_of]
    tail_prec_over_d = np.cumsum(prec_over_d[::-1])[::-1][step_of]
    psi_desc = (y_desc * (prec - ap) + y_desc * tail_inv_d - tail_prec_over_d) / m
    psi = np.empty(n)
    psi[order] = psi_desc
    floor = ap * (1 - ap) / m
    return ap, psi, float(floor)


# Average precision is biased upward with few positives, and no variance fixes a bias. At a
# positive's own score the sample precision counts that positive itself (given the score,
# 1 + (m - 1) T positives at or above it against the population's m T, T the share of
# positives above), and it is a ratio of counts, convex in the false positives (Jensen): the
# bias is of order 1 / m. In binormal classes of 400 records (AUROC 0.85-0.99) it is +0.05 to
# +0.13 at 2 positives, +0.006 to +0.053 at 10, under +0.005 from 100 (statistics benchmark,
# section 2: 1000 replicates each, Monte-Carlo SE <= 0.011; docs/analysis.md). Over the statistics benchmark's 12 classes of
# 2-200 positives the macro average was +0.032 too high and its interval covered 0.857 at
# nominal 0.95 (2000 replicates), the truth below the interval in nearly every miss. A
# two-sample jackknife correction (Arvesen 1969) removed about half of the bias at 2 positives,
# nearly all of it from 25, and left the macro interval at 0.905 (1000 replicates). Over the
# classes with at least 10 positives, as the audit proposed (issue 19), the bias is +0.011 and
# the interval covers 0.955 (2000 replicates, Monte-Carlo SE 0.005); rarer classes keep their
# own AP and Boyd et al. (2013)'s logit interval in class_metrics. The threshold is declared
# with the metrics (metric_names.py), where the dashboard reads it without scipy.


def auprc_classes(y: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The classes macro AUPRC averages: those of `used` with >= MACRO_AUPRC_MIN_POSITIVES positives."""
    return np.asarray(used, bool) & (np.asarray(y, bool).sum(axis=0) >= MACRO_AUPRC_MIN_POSITIVES)


def macro_interval(influences: list[tuple[float, np.ndarray, float]], level: float = CI_LEVEL) -> Interval:
    """Normal interval of the mean of per-class estimates from their influence values."""
    if not influences:
        return Interval(np.nan, np.nan, np.nan)
    k = len(influences)
    values = np.array([v for v, _, _ in influences])
    psi = np.mean([p for _, p, _ in influences], axis=0)
    variance = float(np.sum(psi ** 2))
    shortfall = sum(max(0.0, floor - float(np.sum(p ** 2))) for _, p, floor in influences)
    variance += shortfall / k ** 2
    centre = float(values.mean())
    half = float(norm.ppf(0.5 + level / 2)) * np.sqrt(variance)
    return Interval(centre, max(0.0, centre - half), min(1.0, centre + half))


def macro_intervals(y: np.ndarray, scores: np.ndarray, called: np.ndarray, used: np.ndarray,
                    level: float = CI_LEVEL) -> dict[str, Interval]:
    """macro_auroc, macro_f1 and brier intervals over the `used` classes; macro_auprc over
    `auprc_classes(y, used)` (nan when no class has enough positives)."""
    classes = np.flatnonzero(used)
    out = {
        "macro_auroc": macro_interval([auroc_influence(y[:, c], scores[:, c]) for c in classes], level),
        "macro_f1": macro_interval([f1_influence(y[:, c], called[:, c]) for c in classes], level),
        "macro_auprc": macro_interval([average_precision_influence(y[:, c], scores[:, c])
                                       for c in np.flatnonzero(auprc_classes(y, used))], level),
    }
    # The Brier score is a plain mean over records of the per-record squared errors.
    if len(classes):
        per_record = np.mean((scores[:, classes] - y[:, classes]) ** 2, axis=1)
        centre = float(per_record.mean())
        half = float(norm.ppf(0.5 + level / 2)) * per_record.std(ddof=1) / np.sqrt(len(per_record))
        out["brier"] = Interval(centre, max(0.0, centre - half), centre + half)
    else:
        out["brier"] = Interval(np.nan, np.nan, np.nan)
    return out
