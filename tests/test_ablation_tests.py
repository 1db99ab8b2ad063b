"""The ablation_tests table over planted runs: a weaker arm is found worse in every domain, an arm
identical to `full` differs by exactly zero, fold x seed pairs are never independent samples
(no p-value below 3 seeds), Holm's family holds the ablations only, and the across-fold row
gives the signed-rank posterior with the decision rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heartbeatai.analysis.ablation_stats import decide, fold_comparison, minimum_attainable_p
from heartbeatai.analysis.ablation_tests import ComparisonSettings, ablation_test_rows
from heartbeatai.analysis.evaluation import prediction_rows
from heartbeatai.results.schema import table

CLASSES = ["AF", "RBBB", "PAC", "NSR"]
DOMAINS = ["alpha", "beta", "gamma", "delta"]
SETTINGS = ComparisonSettings(n_boot=100, seed=0, rope=0.01, decision_probability=0.95, posterior_samples=4000)


def _planted(seeds=(1, 2), n=200, weaker_by=1.0):
    """Predictions and thresholds of full, a clearly weaker arm, an arm identical to full and
    the two reference rows, on each of four held-out domains."""
    rng = np.random.default_rng(0)
    predictions, metrics = [], []
    for domain in DOMAINS:
        y = rng.random((n, len(CLASSES))) < np.array([0.2, 0.1, 0.08, 0.5])
        ids = [f"{domain}{i:04d}" for i in range(n)]
        for seed in seeds:
            full = 1.8 * y + rng.normal(size=y.shape)
            runs = {"full": full, "no-smoothing": full, "no-se": (1.8 - weaker_by) * y + rng.normal(size=y.shape),
                    "baseline": 0.5 * y + rng.normal(size=y.shape),
                    "prevalence": np.broadcast_to(y.mean(axis=0), y.shape).copy()}
            for arm, logits in runs.items():
                trial = "prevalence" if arm == "prevalence" else f"{domain}-{arm}-{seed}"
                key = {"study": "s", "protocol": "lodo", "fold_id": f"lodo:{domain}", "arm": arm, "seed": seed,
                       "selection": "val", "trial_id": trial}
                scores = logits if arm == "prevalence" else 1 / (1 + np.exp(-logits))
                predictions.append(prediction_rows(ids, [domain] * n, scores, y, CLASSES, key, "test"))
                cut = y.mean(axis=0) if arm == "prevalence" else np.full(len(CLASSES), 0.5)
                metrics += [{**key, "split": "test", "label_set": "noisy", "class": c, "threshold": float(t)}
                            for c, t in zip(CLASSES, cut)]
    return pd.concat(predictions, ignore_index=True), pd.DataFrame(metrics)


@pytest.fixture(scope="module")
def two_seeds():
    return ablation_test_rows(*_planted(), "s", SETTINGS)


@pytest.fixture(scope="module")
def three_seeds():
    return ablation_test_rows(*_planted(seeds=(1, 2, 3)), "s", SETTINGS)


def _rows(frame, arm, metric="macro_auroc", scope="fold"):
    return frame[(frame["arm"] == arm) & (frame["metric"] == metric) & (frame["scope"] == scope)]


def test_rows_carry_the_store_schema(two_seeds):
    declared = table("ablation_tests")
    assert set(two_seeds.columns) <= set(declared.columns) and set(declared.required) <= set(two_seeds.columns)
    assert set(two_seeds["scope"]) == {"fold", "across"}


def test_a_weaker_arm_is_worse_in_every_domain_and_decided_worse_across_them(three_seeds):
    folds = _rows(three_seeds, "no-se")
    assert len(folds) == len(DOMAINS) and (folds["diff"] < -0.05).all() and (folds["diff_hi"] < 0).all()
    assert (folds["p_value"] < 0.05).all()
    across = _rows(three_seeds, "no-se", scope="across").iloc[0]
    assert across["n_worse"] == len(DOMAINS) and across["n_better"] == 0
    assert across["p_worse"] > 0.99 and across["decision"] == "worse"
    assert across["min_attainable_p"] == pytest.approx(minimum_attainable_p(4)) == pytest.approx(0.125)
    assert pd.isna(across["p_value"])  # four domains cannot reject: no p-value is printed


def test_an_arm_identical_to_full_differs_by_exactly_zero(three_seeds):
    folds = _rows(three_seeds, "no-smoothing")
    assert (folds["diff"] == 0).all() and (folds["diff_lo"] == 0).all() and (folds["diff_hi"] == 0).all()
    across = _rows(three_seeds, "no-smoothing", scope="across").iloc[0]
    assert across["decision"] == "equivalent" and across["p_equivalent"] > 0.95


def test_with_two_seeds_the_fold_interval_is_conditional_and_carries_no_p_value(two_seeds):
    folds = _rows(two_seeds, "no-se")
    assert folds["conditional"].all() and folds["p_value"].isna().all() and folds["p_holm"].isna().all()
    assert folds["method"].str.contains("conditional on the trained models").all()


def test_holm_runs_over_the_ablation_arms_and_domains_of_one_metric_only(three_seeds):
    for metric, rows in three_seeds[three_seeds["scope"] == "fold"].groupby("metric"):
        family = rows[~rows["reference"] & rows["p_value"].notna()]
        assert len(family) == 2 * len(DOMAINS)  # no-se and no-smoothing x four domains
        assert (family["p_holm"] >= family["p_value"] - 1e-12).all()
        assert rows.loc[rows["reference"], "p_holm"].isna().all()  # baseline and floor stand outside
        m = len(family)
        smallest = family["p_value"].min()
        assert family["p_holm"].min() == pytest.approx(min(1.0, m * smallest))


def test_minimised_metrics_are_oriented_so_positive_means_the_arm_is_better(three_seeds):
    brier = _rows(three_seeds, "no-se", metric="brier")
    assert (brier["mean_arm"] > brier["mean_full"]).all()  # the weaker arm has the worse (higher) Brier...
    assert (brier["diff"] < 0).all()  # ... which reads as "worse"


def test_the_same_seed_writes_the_same_table():
    again = ablation_test_rows(*_planted(), "s", SETTINGS)
    assert again.equals(ablation_test_rows(*_planted(), "s", SETTINGS))


def test_fold_comparison_resamples_seeds_only_from_three():
    rng = np.random.default_rng(0)
    full, arm = rng.normal(0.8, 0.01, (101, 3)), rng.normal(0.79, 0.01, (101, 3))
    draws = rng.integers(0, 3, (100, 3))
    assert not fold_comparison(full, arm, draws).conditional
    assert fold_comparison(full[:, :2], arm[:, :2], draws[:, :2]).conditional


@pytest.mark.parametrize(("p", "expected"), [((0.96, 0.03, 0.01), "better"), ((0.01, 0.03, 0.96), "worse"),
                                             ((0.02, 0.97, 0.01), "equivalent"), ((0.6, 0.3, 0.1), "undecided")])
def test_the_decision_rule_needs_one_posterior_probability_above_the_threshold(p, expected):
    p_better, p_equivalent, p_worse = p
    assert decide({"p_better": p_better, "p_equivalent": p_equivalent, "p_worse": p_worse}, 0.95) == expected
