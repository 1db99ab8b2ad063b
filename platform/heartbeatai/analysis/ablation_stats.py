"""Paired comparisons of an arm against `full`, with one model of the noise (docs/analysis.md).

The unit of replication is the held-out domain (DESIGN.md, Study): the seeds of one fold
share its test records and training data. A fold's estimate is the seed-averaged paired
difference d = mean_s(arm_s - full_s) on its test records, and it has two sources of noise:

- records: the record bootstrap's variance of d with the seeds held fixed (every replicate
  reweights the records of both arms and all seeds alike, so it is a paired variance);
- seeds: the spread of the per-seed differences, var_s(d_s) / S, which the records do not
  show (a seed is a draw of the trained model).

SE^2 = V_records + V_seeds, and the reference distribution is Student's t with the
Welch-Satterthwaite degrees of freedom (the seed part's taken at its upper confidence bound,
see `Estimate.df`), which run from S - 1 where the seeds dominate to many where the records
do: with 3 seeds the normal approximation rejected a true null at 0.124-0.157 where seed
noise was 4-8 times the record noise (issue 19); this t does not. With one seed there is no seed variance to estimate: the figure is conditional on
the trained model and says so.

Across the held-out domains, the fold estimates and their SEs go into a random-effects
meta-analysis (Paule-Mandel tau^2, statsmodels), with the modified Knapp-Hartung variance
(Roever, Knapp and Friede 2015: the HKSJ scale, never below 1) and t with k - 1 df: each
domain's uncertainty is propagated, the between-domain variance is a random effect, and a
few domains give the wide interval they should (Hartung-Knapp holds its level with 4
studies where DerSimonian-Laird's normal interval does not).

A comparison becomes a decision through one rule (decisions.py): claims (better, worse,
equivalent beyond / within the region of practical equivalence) are one-sided t tests on
these estimates, and Holm's procedure controls the family-wise error over each declared
family. Everything here is analytic given the variances: the only Monte Carlo error is the
bootstrap's in V_records, which decisions.py carries through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import special

# Below this many seeds per arm the seed variance is not estimated (one draw has no spread).
MIN_SEEDS_FOR_SEED_VARIANCE = 2
# Degrees of freedom of the record bootstrap's variance: large (hundreds of records), and
# finite so that a variance of pure record noise still has a t reference.
RECORD_DF = 1000.0


# Student's t and the chi-square quantile through scipy.special, the functions scipy.stats'
# t and chi2 call (bit-identical, tests/test_ablation_tests.py): per-class per-domain tests
# make tens of thousands of scalar calls, at about 250 us each through the distribution
# objects' argument handling (17 of the 22 s a 3-fold fake store's analysis took).
def t_ppf(q: float, df: float) -> float:
    return float(special.stdtrit(df, q))


def t_cdf(x: float, df: float) -> float:
    return float(special.stdtr(df, x))


def t_sf(x: float, df: float) -> float:
    return float(special.stdtr(df, -x))


def chi2_ppf(q: float, df: float) -> float:
    return float(2 * special.gammaincinv(df / 2, q))


@dataclass(frozen=True)
class Estimate:
    """One paired difference (arm - full, oriented so that positive = arm better) and its noise."""

    difference: float
    record_variance: float  # of the difference, seeds held fixed
    seed_variance: float  # var_s(d_s) / S; 0 where not estimated
    seed_df: float  # S - 1
    conditional: bool  # True: fewer than MIN_SEEDS_FOR_SEED_VARIANCE seeds, models taken as fixed
    n_seeds: int
    tau2: float = float("nan")  # between-domain variance (across-domain estimates only)
    n_domains: int = 1
    # The HKSJ scale of an across-domain estimate; its variance is the record-and-seed one times this.
    scale: float = 1.0

    @cached_property
    def se(self) -> float:
        return float(np.sqrt(max(self.record_variance + self.seed_variance, 0.0) * self.scale))

    @cached_property
    def df(self) -> float:
        if self.n_domains > 1:
            return float(self.n_domains - 1)
        # Welch-Satterthwaite, (a + b)^2 / (a^2 / df_a + b^2 / df_b), with the seed variance at
        # its upper 90% confidence bound: with 2-3 seeds an estimate that happens to be small
        # otherwise buys many df exactly when the SE is too small (coverage 0.87 at 2 seeds and
        # seed noise 4x the records'; with the bound, 0.95-0.99 over 2-5 seeds and ratios 0.5-8,
        # tests/test_ablation_tests.py).
        a, b = self.record_variance, self.seed_variance
        if self.seed_df > 0:
            b = b * self.seed_df / chi2_ppf(0.10, self.seed_df)
        denominator = a * a / RECORD_DF + (b * b / self.seed_df if self.seed_df > 0 else 0.0)
        return float((a + b) ** 2 / denominator) if denominator > 0 else RECORD_DF

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if not (np.isfinite(self.difference) and self.se > 0):
            return float("nan"), float("nan")
        half = t_ppf(0.5 + level / 2, self.df) * self.se
        return self.difference - half, self.difference + half

    def p_value(self) -> float:
        """Two-sided p of no difference."""
        if not (np.isfinite(self.difference) and self.se > 0):
            return float("nan")
        return 2 * t_sf(abs(self.difference) / self.se, self.df)

    def confidence(self, rope: float) -> dict[str, float]:
        """P(better), P(equivalent), P(worse) under the t confidence distribution of the
        difference (the posterior under a flat prior): beyond +rope, within, beyond -rope."""
        if not (np.isfinite(self.difference) and self.se > 0):
            return {"p_better": float("nan"), "p_equivalent": float("nan"), "p_worse": float("nan")}
        better = t_sf((rope - self.difference) / self.se, self.df)
        worse = t_cdf((-rope - self.difference) / self.se, self.df)
        return {"p_better": better, "p_equivalent": max(0.0, 1.0 - better - worse), "p_worse": worse}

    def with_record_variance_scaled(self, factor: float) -> "Estimate":
        return replace(self, record_variance=self.record_variance * factor)


def fold_estimate(full: np.ndarray, arm: np.ndarray) -> Estimate:
    """One fold's paired estimate from per-replicate metrics.

    `full` and `arm` are (B + 1, S) metric values of each seed's run under record weights,
    row 0 the unweighted point estimate, oriented so that higher is better; seed s of the
    arm pairs with seed s of full, and every replicate weights the records alike for all.
    """
    n_seeds = full.shape[1]
    per_seed = arm[0] - full[0]
    difference = float(per_seed.mean())
    replicates = (arm[1:] - full[1:]).mean(axis=1)
    replicates = replicates[np.isfinite(replicates)]
    record_variance = float(np.var(replicates, ddof=1)) if len(replicates) > 1 else float("nan")
    conditional = n_seeds < MIN_SEEDS_FOR_SEED_VARIANCE
    seed_variance = 0.0 if conditional else float(np.var(per_seed, ddof=1) / n_seeds)
    return Estimate(difference, record_variance, seed_variance, float(n_seeds - 1), conditional, n_seeds)


def across_domains(folds: list[Estimate]) -> Estimate:
    """Random-effects pooling of the folds' estimates (Paule-Mandel, modified Knapp-Hartung)."""
    from statsmodels.stats.meta_analysis import combine_effects

    usable = [f for f in folds if np.isfinite(f.difference) and f.se > 0]
    k = len(usable)
    n_seeds = min((f.n_seeds for f in folds), default=0)
    conditional = any(f.conditional for f in folds)
    if k == 0:
        return Estimate(float("nan"), float("nan"), 0.0, 0.0, conditional, n_seeds, n_domains=0)
    effects = np.array([f.difference for f in usable])
    variances = np.array([f.se ** 2 for f in usable])
    if k == 1:
        only = usable[0]
        return replace(only, n_domains=1)
    result = combine_effects(effects, variances, method_re="iterated", use_t=True)
    variance = float(result.var_eff_w_re)
    # The modified HKSJ: the scale may not shrink the interval below the plain random-effects one.
    scale = max(1.0, float(result.scale_hksj_re))
    return Estimate(float(result.mean_effect_re), variance, 0.0, 0.0, conditional, n_seeds,
                    tau2=float(result.tau2), n_domains=k, scale=scale)
