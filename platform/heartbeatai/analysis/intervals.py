"""Confidence intervals of one class's test metrics, chosen by simulated coverage.

`python -m benchmarks statistics` measures the coverage of every method here per number
of test positives; the methods are the ones that reached the targets there (DESIGN.md,
Analysis). All three treat the model and its threshold as fixed (both come from training
and validation) and the test records as the sample:

- AUROC: a score-type interval (Newcombe 2006): the AUROC values theta with
  (A - theta)^2 <= z^2 V(theta), where V is Hanley & McNeil (1982)'s variance at theta,
  scaled up by DeLong et al. (1988)'s nonparametric variance where that is the larger.
  Evaluating the variance at theta rather than at the estimate (as Wilson does for a
  proportion) keeps the interval inside [0, 1] and informative at perfect separation,
  where a Wald or logit interval collapses or spans everything; DeLong's variance alone
  is a sample variance of a handful of positives' components and collapses with few
  positives or near-perfect separation (0.84 coverage at 10 positives, AUROC 0.97, in the
  benchmark).
- F1 at a fixed threshold: F1 = 2J / (1 + J) with J = TP / (TP + FP + FN) (the Jaccard
  index). Given the number m = TP + FP + FN of records that are positive or called
  positive, TP is binomial(m, J) under multinomial sampling of records, so Wilson's score
  interval for J, mapped through the monotone 2J / (1 + J), is an interval for F1 whose
  coverage does not rest on a normal approximation of F1 itself.
- AUPRC (average precision): Boyd, Eng & Page (2013)'s logit interval, logit(AP) +- z /
  sqrt(n_pos AP (1 - AP)).

A class needs at least one positive and one negative for any of them (DESIGN.md, Folds:
present classes); below the study's minimum positives an interval is returned but marked
unreliable by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm, rankdata
from statsmodels.stats.proportion import proportion_confint

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


NAN_INTERVAL = Interval(np.nan, np.nan, np.nan)


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


def delong_components(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and its structural components: V10 per positive, V01 per negative (ties count 1/2).

    V10(x) is the share of negatives scored below positive x, V01(z) the share of positives
    above negative z; the AUROC is the mean of either (Sun & Xu 2014, midrank form).
    """
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=float)
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    all_ranks = rankdata(np.concatenate([pos, neg]))
    pos_ranks, neg_ranks = rankdata(pos), rankdata(neg)
    v10 = (all_ranks[:m] - pos_ranks) / n
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m
    return float(v10.mean()), v10, v01


def delong_variance(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong's variance of the AUROC: S10 / m + S01 / n (sample variances, ddof 1)."""
    m, n = len(v10), len(v01)
    s10 = v10.var(ddof=1) if m > 1 else 0.0
    s01 = v01.var(ddof=1) if n > 1 else 0.0
    return float(s10 / m + s01 / n)


def hanley_mcneil_variance(auc: float, m: int, n: int) -> float:
    """Hanley & McNeil (1982)'s AUROC variance for m positives and n negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return float((auc * (1 - auc) + (m - 1) * (q1 - auc * auc) + (n - 1) * (q2 - auc * auc)) / (m * n))


def auroc_interval(y: np.ndarray, s: np.ndarray, level: float = CI_LEVEL) -> Interval:
    """Score-type interval of one class's AUROC (nan when the class is not present)."""
    y = np.asarray(y, dtype=bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return NAN_INTERVAL
    auc, v10, v01 = delong_components(y, s)
    # How much more the components vary than Hanley-McNeil's model says, never less.
    inflation = max(1.0, delong_variance(v10, v01) / hanley_mcneil_variance(float(np.clip(auc, 1e-9, 1 - 1e-9)), m, n))
    z2 = _z(level) ** 2

    def outside(theta: float) -> float:
        return (auc - theta) ** 2 - z2 * inflation * hanley_mcneil_variance(theta, m, n)

    # The variance vanishes at 0 and 1, so at a boundary estimate the root sought is the
    # other one: bracket from just inside the estimate, where `outside` is negative.
    tiny, step = 1e-12, 1e-9
    low = 0.0 if auc <= step or outside(tiny) <= 0 else brentq(outside, tiny, auc - step)
    high = 1.0 if auc >= 1 - step or outside(1 - tiny) <= 0 else brentq(outside, auc + step, 1 - tiny)
    return Interval(auc, float(low), float(high))


def f1_interval(tp: int, fp: int, fn: int, level: float = CI_LEVEL) -> Interval:
    """Wilson interval of the Jaccard index J = TP / (TP + FP + FN), mapped to F1 = 2J / (1 + J)."""
    m = tp + fp + fn
    if m == 0:
        return NAN_INTERVAL
    low, high = proportion_confint(tp, m, alpha=1 - level, method="wilson")
    to_f1 = lambda j: 2 * j / (1 + j)  # noqa: E731
    return Interval(to_f1(tp / m), float(to_f1(low)), float(to_f1(high)))


def average_precision_interval(ap: float, n_pos: int, level: float = CI_LEVEL) -> Interval:
    """Boyd et al. (2013)'s logit interval for average precision from n_pos positives."""
    if n_pos == 0 or not np.isfinite(ap):
        return NAN_INTERVAL
    # AP reaches 1 (every positive ranked first) but never 0: only the top needs pulling in.
    centre = float(np.clip(ap, 1e-6, 1 - 0.5 / n_pos))
    half = _z(level) / np.sqrt(n_pos * centre * (1 - centre))
    return Interval(float(ap), float(expit(logit(centre) - half)), float(expit(logit(centre) + half)))
