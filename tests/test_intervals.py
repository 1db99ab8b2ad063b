"""Class-metric intervals: the estimators agree with references, the intervals keep their
shape at the edges, and they cover at nominal level in a small planted simulation (the
full coverage table is `python -m benchmarks statistics`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import f1_score, roc_auc_score

from heartbeatai.analysis.intervals import (
    auroc_interval, average_precision_interval, delong_components, delong_variance, f1_interval,
    hanley_mcneil_variance,
)


def _brute_force_components(y, s):
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)


@pytest.mark.parametrize("seed", range(5))
def test_delong_components_match_the_pairwise_definition_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(80) < 0.3
    s = np.round(rng.normal(size=80) + y, 1)  # rounding plants ties
    auc, v10, v01 = delong_components(y, s)
    ref_auc, ref_v10, ref_v01 = _brute_force_components(y, s)
    assert auc == pytest.approx(ref_auc) == pytest.approx(roc_auc_score(y, s))
    np.testing.assert_allclose(v10, ref_v10)
    np.testing.assert_allclose(v01, ref_v01)
    m, n = y.sum(), (~y).sum()
    assert delong_variance(v10, v01) == pytest.approx(ref_v10.var(ddof=1) / m + ref_v01.var(ddof=1) / n)


@pytest.mark.slow  # a simulation (~10 s); benchmarks statistics covers the intervals built on it
def test_hanley_mcneil_variance_matches_the_simulated_variance_under_their_exponential_model():
    # Hanley & McNeil derive Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A) for exponential scores,
    # where their variance is exact for the Mann-Whitney estimate of the AUROC.
    rng = np.random.default_rng(0)
    m, n, rate = 20, 40, 4.0  # A = rate / (1 + rate) for positives ~ Exp(1), negatives ~ Exp(rate)
    auc = rate / (1 + rate)
    estimates = [roc_auc_score(np.r_[np.ones(m), np.zeros(n)],
                               np.r_[rng.exponential(1.0, m), rng.exponential(1 / rate, n)]) for _ in range(4000)]
    assert np.var(estimates) == pytest.approx(hanley_mcneil_variance(auc, m, n), rel=0.08)


def test_a_perfectly_separated_class_gets_an_informative_interval_reaching_one():
    y = np.array([True] * 30 + [False] * 270)
    interval = auroc_interval(y, np.where(y, 2.0, 0.0))
    assert interval.value == 1.0 and interval.high == 1.0 and 0.9 < interval.low < 0.99
    # Fewer positives, less certainty: the lower bound falls.
    few = np.array([True] * 3 + [False] * 297)
    assert auroc_interval(few, np.where(few, 2.0, 0.0)).low < interval.low


def test_absent_classes_have_no_interval():
    assert np.isnan(auroc_interval(np.zeros(10, bool), np.arange(10.0)).low)
    assert np.isnan(auroc_interval(np.ones(10, bool), np.arange(10.0)).low)
    assert np.isnan(f1_interval(0, 0, 0).low)
    assert np.isnan(average_precision_interval(0.5, 0).low)


def test_the_f1_interval_is_centred_on_sklearns_f1_and_maps_the_jaccard_wilson_interval():
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.2
    called = rng.random(200) < np.where(y, 0.7, 0.1)
    tp, fp, fn = int((y & called).sum()), int((~y & called).sum()), int((y & ~called).sum())
    interval = f1_interval(tp, fp, fn)
    assert interval.value == pytest.approx(f1_score(y, called))
    assert interval.low < interval.value < interval.high
    # Wilson's interval shrinks like 1 / sqrt(m): four times the counts, about half the width.
    wider, narrower = f1_interval(tp, fp, fn), f1_interval(4 * tp, 4 * fp, 4 * fn)
    assert (narrower.high - narrower.low) == pytest.approx((wider.high - wider.low) / 2, rel=0.15)


def _coverage(n_pos: int, reps: int, seed: int) -> dict[str, float]:
    """Share of intervals covering the truth: 300 records, binormal scores, AUROC 0.9."""
    rng = np.random.default_rng(seed)
    n, auc_true, threshold = 300, 0.9, 1.5
    d = np.sqrt(2) * norm.ppf(auc_true)
    pi = n_pos / n
    tpr, fpr = norm.sf(threshold - d), norm.sf(threshold)
    f1_true = 2 * pi * tpr / (2 * pi * tpr + (1 - pi) * fpr + pi * (1 - tpr))
    hits = {"auroc": 0, "f1": 0}
    for _ in range(reps):
        y = np.zeros(n, bool)
        y[:n_pos] = True
        s = rng.normal(size=n) + d * y
        a = auroc_interval(y, s)
        hits["auroc"] += a.low <= auc_true <= a.high
        called = s >= threshold
        f = f1_interval(int((y & called).sum()), int((~y & called).sum()), int((y & ~called).sum()))
        hits["f1"] += f.low <= f1_true <= f.high
    return {k: v / reps for k, v in hits.items()}


@pytest.mark.parametrize("n_pos", [10, 30])
def test_auroc_and_f1_intervals_cover_at_nominal_level_in_a_planted_simulation(n_pos):
    # 300 replicates: a 95% interval's coverage estimate has a Monte-Carlo SE of about 0.013.
    coverage = _coverage(n_pos, reps=300, seed=n_pos)
    assert coverage["auroc"] >= 0.91 and coverage["f1"] >= 0.91
