"""Paired comparisons of an arm against `full`: within each held-out domain, then across them.

The unit of replication is the held-out domain (DESIGN.md, Study): the seeds of one fold
share its test records and its training data, so fold x seed pairs are not independent
samples. Hence two levels:

- Per fold, a paired bootstrap of the seed-averaged difference: records are resampled
  jointly for both arms, and with at least 3 arm seeds the seeds are resampled too (by
  index, jointly, seed s of the arm with seed s of `full`). That interval and its p-value
  include seed variance. With fewer seeds the interval is conditional on the trained models
  (seed variance cannot be estimated from two draws) and no p-value is given: a test that
  ignores seed variance rejects a true null far more often than it says (0.17 at alpha 0.05
  with 2 seeds in `python -m benchmarks statistics`).
- Across folds, the count of domains where the arm is better or worse, and Benavoli et
  al. (2017)'s Bayesian signed-rank test with a region of practical equivalence (baycomp):
  P(arm better), P(equivalent), P(arm worse). A frequentist test across 4 domains cannot
  reject at 0.05 (its smallest attainable two-sided p is 2 x 2^-4 = 0.125), so the table
  shows that bound instead of a p-value unless the design can reach significance.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Mapping

import numpy as np

MIN_SEEDS_FOR_SEED_VARIANCE = 3
# The posterior's three outcomes, in the order baycomp gives them.
OUTCOMES = ("better", "equivalent", "worse")


def decide(posterior: Mapping[str, float | None], threshold: float) -> str:
    """The decision rule applied to an across-fold posterior ({"p_better": ..., ...}): the
    outcome whose probability reaches `threshold`, else "undecided". With a threshold above
    0.5 at most one outcome can reach it."""
    for outcome in OUTCOMES:
        p = posterior.get(f"p_{outcome}")
        if p is not None and p == p and p >= threshold:  # p == p: not nan
            return outcome
    return "undecided"


@dataclass(frozen=True)
class FoldComparison:
    difference: float  # seed-averaged arm - full on the fold's test records (higher = arm better)
    low: float
    high: float
    p_value: float | None  # two-sided bootstrap p; None when the interval is conditional
    conditional: bool  # True: seeds were not resampled (fewer than 3), models taken as fixed
    n_seeds: int


def fold_comparison(full: np.ndarray, arm: np.ndarray, seed_draws: np.ndarray | None,
                    level: float = 0.95) -> FoldComparison:
    """Paired bootstrap of one fold from per-replicate metrics.

    `full` and `arm` are (B + 1, S) metric values of each seed's run under record weights,
    row 0 the unweighted point estimate (oriented so that higher is better). `seed_draws`
    are (B, S) seed indices per replicate, or None to keep the seeds fixed.
    """
    n_seeds = full.shape[1]
    point = float(arm[0].mean() - full[0].mean())
    arm_b, full_b = arm[1:], full[1:]
    resample_seeds = seed_draws is not None and n_seeds >= MIN_SEEDS_FOR_SEED_VARIANCE
    if resample_seeds:
        # Resampling S seeds with replacement spreads their mean by (S - 1)/S of its true
        # variance; widening each draw's seed deviation by sqrt(S / (S - 1)) restores it
        # (the usual small-sample correction of a bootstrap of means), so 3 seeds do not
        # understate the seed variance by a third.
        rows = np.arange(len(arm_b))[:, None]
        per_seed = arm_b - full_b
        centre = per_seed.mean(axis=1)
        drawn = per_seed[rows, seed_draws].mean(axis=1)
        replicates = centre + np.sqrt(n_seeds / (n_seeds - 1)) * (drawn - centre)
    else:
        replicates = arm_b.mean(axis=1) - full_b.mean(axis=1)
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) == 0 or not np.isfinite(point):
        return FoldComparison(point, np.nan, np.nan, None, not resample_seeds, n_seeds)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    p_value = None
    if resample_seeds:
        # Two-sided percentile-bootstrap p (the level at which the interval touches 0), with
        # the +1 that keeps it a valid p-value: never below 2 / (B + 1).
        below, above = np.sum(replicates <= 0), np.sum(replicates >= 0)
        p_value = float(min(1.0, 2 * (1 + min(below, above)) / (len(replicates) + 1)))
    return FoldComparison(point, float(low), float(high), p_value, not resample_seeds, n_seeds)


def minimum_attainable_p(n_folds: int) -> float:
    """Smallest two-sided p of an exact sign or signed-rank test on n folds: 2 x 2^-n."""
    return float(min(1.0, 2.0 * 2.0 ** -n_folds))


@dataclass(frozen=True)
class AcrossFolds:
    n_folds: int
    n_better: int
    n_worse: int
    mean_difference: float
    p_better: float | None
    p_equivalent: float | None
    p_worse: float | None
    rope: float
    min_attainable_p: float
    wilcoxon_p: float | None  # only where min_attainable_p < alpha: otherwise it can never reject


def across_folds(differences: np.ndarray, rope: float, seed: int, alpha: float = 0.05,
                 samples: int = 50000) -> AcrossFolds:
    """Sign counts and the Bayesian signed-rank posterior over per-fold differences (arm - full)."""
    # Imported here: the dashboard imports this module for `decide` and starts fast.
    from baycomp import SignedRankTest
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    floor = minimum_attainable_p(n)
    p_better = p_equivalent = p_worse = None
    if n >= 2:
        probabilities = SignedRankTest.probs(d, np.zeros(n), rope=rope, nsamples=samples, random_state=seed)
        if rope > 0:
            p_better, p_equivalent, p_worse = (float(p) for p in probabilities)
        else:  # baycomp returns (first better, second better) without a rope
            (p_better, p_worse), p_equivalent = (float(p) for p in probabilities), 0.0
    wilcoxon_p = None
    if n >= 1 and floor < alpha and np.any(d != 0):
        wilcoxon_p = float(wilcoxon(d, alternative="two-sided", method="auto").pvalue)
    return AcrossFolds(n, int(np.sum(d > 0)), int(np.sum(d < 0)), float(d.mean()) if n else np.nan,
                       p_better, p_equivalent, p_worse, rope, floor, wilcoxon_p)
