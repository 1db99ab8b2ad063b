"""The ablation_tests table over planted runs, and the noise model and decision rule under it
checked by simulation against a planted truth: a weaker arm is found worse, an arm identical
to `full` is marked and kept out of the families, fold intervals cover with seed noise
dominating, across-domain decisions hold their family-wise level, and another bootstrap
seed gives the same decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heartbeatai.analysis import ablation_stats
from heartbeatai.analysis.ablation_stats import across_domains, fold_estimate
from heartbeatai.analysis.ablation_tests import ComparisonSettings, ablation_test_rows
from heartbeatai.analysis.decisions import decide
from heartbeatai.analysis.evaluation import prediction_rows
from heartbeatai.results.schema import table

CLASSES = ["AF", "RBBB", "PAC", "NSR"]
DOMAINS = ["alpha", "beta", "gamma", "delta"]
SETTINGS = ComparisonSettings(n_boot=200, seed=0, rope=0.01, decision_probability=0.95)


def test_the_fast_t_and_chi2_functions_are_scipy_stats_to_the_last_bit():
    """The analysis calls scipy.special directly for speed; scipy.stats' distributions are the reference."""
    from scipy import stats

    for df in (0.7, 1.0, 2.0, 3.5, 11.0, 999.0, 1e6, np.inf):
        for q in (0.001, 0.05, 0.5, 0.95, 0.975):
            assert ablation_stats.t_ppf(q, df) == stats.t.ppf(q, df)
        for x in (-30.0, -1.96, 0.0, 0.3, 2.5):
            assert ablation_stats.t_cdf(x, df) == stats.t.cdf(x, df)
            assert ablation_stats.t_sf(x, df) == stats.t.sf(x, df)
        if np.isfinite(df):
            assert ablation_stats.chi2_ppf(0.10, df) == stats.chi2.ppf(0.10, df)


def _planted(seeds=(1, 2), n=200, weaker_by=1.0):
    """Predictions and thresholds of full, a clearly weaker arm, an arm identical to full and
    the two reference rows, on each of four held-out domains."""
    rng = np.random.default_rng(0)
    predictions, metrics, trials = [], [], []
    for domain in DOMAINS:
        y = rng.random((n, len(CLASSES))) < np.array([0.2, 0.1, 0.1, 0.5])
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
                # no-smoothing's override was the fold's selection already: full's configuration
                smoothing = 0.1 if arm in ("full", "no-smoothing") else 0.0 if arm != "no-se" else 0.1
                trials.append({**key, "cfg.label_smoothing": smoothing, "cfg.model.se": arm != "no-se",
                               "cfg.seed": seed, "status": "completed"})
    return pd.concat(predictions, ignore_index=True), pd.DataFrame(metrics), pd.DataFrame(trials)


def _table(seeds=(1, 2, 3), settings=SETTINGS):
    predictions, metrics, trials = _planted(seeds=seeds)
    return ablation_test_rows(predictions, metrics, "s", settings, trials=trials)


@pytest.fixture(scope="module")
def three_seeds():
    return _table()


def _rows(frame, arm, metric="macro_auroc", scope="fold"):
    return frame[(frame["arm"] == arm) & (frame["metric"] == metric) & (frame["scope"] == scope)]


def test_rows_carry_the_store_schema(three_seeds):
    declared = table("ablation_tests")
    assert set(three_seeds.columns) <= set(declared.columns) and set(declared.required) <= set(three_seeds.columns)
    assert set(three_seeds["scope"]) == {"fold", "across"}


def test_a_weaker_arm_is_worse_in_every_domain_and_decided_worse_across_them(three_seeds):
    folds = _rows(three_seeds, "no-se")
    assert len(folds) == len(DOMAINS) and (folds["diff"] < -0.05).all() and (folds["diff_hi"] < 0).all()
    assert (folds["p_value"] < 0.05).all() and (folds["claim"] == "worse").all()
    across = _rows(three_seeds, "no-se", scope="across").iloc[0]
    assert across["n_worse"] == len(DOMAINS) and across["n_better"] == 0
    assert across["family"] == "confirmatory" and across["p_worse"] > 0.99 and across["decision"] == "worse"
    assert across["df"] == len(DOMAINS) - 1  # Knapp-Hartung: t with k - 1 df


def test_an_arm_identical_to_full_is_marked_and_kept_out_of_every_family(three_seeds):
    rows = three_seeds[three_seeds["arm"] == "no-smoothing"]
    folds = rows[rows["scope"] == "fold"]
    assert folds["identical"].all() and (folds["decision"] == "identical").all() and folds["p_holm"].isna().all()
    assert (folds["diff"] == 0).all()
    # No domain is left to pool: the across row is not written.
    assert rows[rows["scope"] == "across"].empty


def test_each_declared_family_is_holm_adjusted_on_its_own(three_seeds):
    claimed = three_seeds[three_seeds["claim"].isin(["better", "worse", "equivalent"])]
    # Reference rows (baseline, prevalence floor) stand outside every family: their p is their own.
    references = claimed[claimed["reference"].astype(bool)]
    pd.testing.assert_series_equal(references["p_holm"], references["p_claim"], check_names=False)
    decided = claimed[~claimed["reference"].astype(bool)]
    confirmatory = decided[decided["family"] == "confirmatory"]
    assert set(confirmatory["scope"]) == {"across"} and set(confirmatory["metric"]) == {"macro_auroc"}
    for _, family in decided.groupby("family"):
        # Holm's first step multiplies the smallest p by the family's size (an independent reading).
        assert family["p_holm"].min() == pytest.approx(min(1.0, len(family) * family["p_claim"].min()))
        assert (family["p_holm"] >= family["p_claim"] - 1e-12).all()
        assert (family["p_holm_low"] <= family["p_holm"] + 1e-12).all()
        assert (family["p_holm"] <= family["p_holm_high"] + 1e-12).all()


def test_minimised_metrics_are_oriented_so_positive_means_the_arm_is_better(three_seeds):
    brier = _rows(three_seeds, "no-se", metric="brier")
    assert (brier["mean_arm"] > brier["mean_full"]).all()  # the weaker arm has the worse (higher) Brier...
    assert (brier["diff"] < 0).all()  # ... which reads as "worse"


def test_the_same_seed_writes_the_same_table():
    assert _table(seeds=(1, 2)).equals(_table(seeds=(1, 2)))


def test_another_bootstrap_seed_gives_the_same_decisions(three_seeds):
    other = _table(settings=ComparisonSettings(n_boot=200, seed=7, rope=0.01, decision_probability=0.95))
    key = ["protocol", "metric", "arm", "scope", "fold_id"]
    merged = three_seeds[key + ["decision"]].merge(other[key + ["decision"]], on=key, suffixes=("", "_other"))
    assert len(merged) == len(three_seeds)
    assert (merged["decision"] == merged["decision_other"]).all()


def test_with_one_seed_a_fold_is_conditional_and_says_so():
    rng = np.random.default_rng(0)
    estimate = fold_estimate(rng.normal(0.8, 0.01, (101, 1)), rng.normal(0.79, 0.01, (101, 1)))
    assert estimate.conditional and estimate.seed_variance == 0.0
    assert not fold_estimate(rng.normal(0.8, 0.01, (101, 2)), rng.normal(0.79, 0.01, (101, 2))).conditional


def _simulated_fold(rng, delta, seeds, sd_seed, sd_records, n_boot=200):
    """(B + 1, S) arrays of a fold whose test records add one shared error to every seed's
    difference and whose bootstrap replicates reweight them alike (the pairing of the table)."""
    record_error = rng.normal(0, sd_records)
    points = delta + rng.normal(0, sd_seed, seeds) + record_error
    replicates = points[None, :] + rng.normal(0, sd_records, (n_boot, 1))
    arm = np.vstack([points, replicates])
    return np.zeros_like(arm), arm


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_fold_intervals_cover_the_expected_difference_when_seed_noise_dominates(seeds):
    """Issue 19: with seed noise 4x the record noise the old normal bootstrap rejected a true null in
    0.12-0.16 of studies; t with Satterthwaite df covers at nominal."""
    rng = np.random.default_rng(seeds)
    covered = [lo <= 0.0 <= hi for lo, hi in
               (fold_estimate(*_simulated_fold(rng, 0.0, seeds, 0.04, 0.01)).interval() for _ in range(1500))]
    assert 0.93 <= np.mean(covered) <= 0.985


def test_across_domain_intervals_cover_with_four_domains_and_between_domain_variance():
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(600):
        folds = [fold_estimate(*_simulated_fold(rng, rng.normal(0.0, 0.03), 3, 0.04, 0.015)) for _ in range(4)]
        low, high = across_domains(folds).interval()
        covered.append(low <= 0.0 <= high)
    assert np.mean(covered) >= 0.93


@pytest.mark.slow
@pytest.mark.parametrize(("domain_sd", "family"), [(0.04, 20), (0.08, 60)])
def test_a_planted_null_family_makes_a_false_decision_in_at_most_alpha_of_studies(domain_sd, family):
    """Per-domain SD 0.04-0.08 (2-8 ROPEs; the demo shows 0.04), 3 seeds, 4 domains, a family of 20-60 null
    comparisons: the old rule decided a null in 0.07-0.15 of comparisons; Holm over the family holds 0.05."""
    from benchmarks.bench_statistics import decision_rates

    rates = decision_rates(domain_sd, family, 0.0, 0.0, reps=150, seed=3)
    assert rates["family-wise false decision"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 150)
    assert rates["false decision per null comparison"] <= 0.05


@pytest.mark.parametrize(("row", "expected"), [
    ({"claim": "better", "p_holm": 0.01, "p_holm_low": 0.008, "p_holm_high": 0.012}, "better"),
    ({"claim": "worse", "p_holm": 0.2}, "undecided"),
    ({"claim": "equivalent", "p_holm": 0.04, "p_holm_low": 0.03, "p_holm_high": 0.06}, "at the threshold"),
    ({"claim": "identical", "p_holm": float("nan")}, "identical"),
    ({"claim": "undecided", "p_holm": float("nan")}, "undecided"),
])
def test_the_decision_rule_reads_the_claim_its_adjusted_p_and_the_monte_carlo_band(row, expected):
    assert decide(row, 0.95) == expected


def test_macro_auprc_is_compared_over_the_classes_fold_metrics_averages():
    from sklearn.metrics import average_precision_score

    predictions, metrics, trials = _planted(seeds=(1, 2), n=100)
    frame = ablation_test_rows(predictions, metrics, "s", ComparisonSettings(n_boot=20, seed=0, rope=0.01,
                                                                            decision_probability=0.95), trials=trials)
    rows = _rows(frame, "no-se", "macro_auprc")
    full = predictions[(predictions["arm"] == "full") & (predictions["split"] == "test")]
    restricted = 0
    for _, row in rows.iterrows():
        runs = full[full["fold_id"] == row["fold_id"]]
        y = runs[runs["seed"] == 1][[f"y_{c}" for c in CLASSES]].to_numpy()
        kept = [c for c, k in zip(CLASSES, y.sum(axis=0)) if k >= 10 and k < len(y)]
        restricted += len(kept) < len(CLASSES)
        expected = np.mean([np.mean([average_precision_score(one[f"y_{c}"], one[f"p_{c}"]) for c in kept])
                            for _, one in runs.groupby("seed")])
        assert row["mean_full"] == pytest.approx(expected), row["fold_id"]
        assert ">= 10 test positives" in row["method"]
    assert restricted, "the planted domains should have a class under ten positives"


def test_a_domain_without_a_class_of_enough_positives_is_left_out_of_macro_auprc(monkeypatch):
    from heartbeatai.analysis import macro_intervals

    predictions, metrics, trials = _planted(seeds=(1, 2), n=100)
    positives = predictions[(predictions["arm"] == "full") & (predictions["seed"] == 1)].groupby("fold_id")["y_NSR"].sum()
    cut = int(positives.max())  # NSR, the commonest class, reaches it in some domains only
    monkeypatch.setattr(macro_intervals, "MACRO_AUPRC_MIN_POSITIVES", cut)
    frame = ablation_test_rows(predictions, metrics, "s", ComparisonSettings(n_boot=20, seed=0, rope=0.01,
                                                                            decision_probability=0.95), trials=trials)
    kept = sorted(positives[positives >= cut].index)
    assert 0 < len(kept) < len(DOMAINS)
    assert sorted(_rows(frame, "no-se", "macro_auprc")["fold_id"]) == kept
    across = _rows(frame, "no-se", "macro_auprc", scope="across").iloc[0]
    assert across["n_folds"] == len(kept)
    assert f"{len(DOMAINS) - len(kept)} domain(s) without a class to average left out" in across["method"]
    assert len(_rows(frame, "no-se", "macro_auroc")) == len(DOMAINS)


def _one_class_weaker(seeds=(1, 2, 3), n=200, weak_class="RBBB"):
    """full and an arm whose scores lose their signal on one class only (fresh noise elsewhere)."""
    rng = np.random.default_rng(5)
    predictions, metrics = [], []
    for domain in DOMAINS:
        y = rng.random((n, len(CLASSES))) < np.array([0.2, 0.1, 0.1, 0.5])
        ids = [f"{domain}{i:04d}" for i in range(n)]
        for seed in seeds:
            signal = np.full(len(CLASSES), 1.8)
            weaker = signal.copy()
            weaker[CLASSES.index(weak_class)] = 0.3
            for arm, strength in (("full", signal), ("no-mixstyle", weaker)):
                key = {"study": "s", "protocol": "lodo", "fold_id": f"lodo:{domain}", "arm": arm, "seed": seed,
                       "selection": "val", "trial_id": f"{domain}-{arm}-{seed}"}
                scores = 1 / (1 + np.exp(-(strength * y + rng.normal(size=y.shape))))
                predictions.append(prediction_rows(ids, [domain] * n, scores, y, CLASSES, key, "test"))
                metrics += [{**key, "split": "test", "label_set": "noisy", "class": c, "threshold": 0.5}
                            for c in CLASSES]
    return pd.concat(predictions, ignore_index=True), pd.DataFrame(metrics)


def test_per_class_comparisons_find_the_one_class_an_arm_loses_and_decide_no_other():
    predictions, metrics = _one_class_weaker()
    found: list = []
    ablation_test_rows(predictions, metrics, "s", SETTINGS, class_rows=found)
    [rows] = found
    assert set(rows.columns) <= set(table("class_tests").columns)
    assert set(rows.loc[rows["fold_id"] == "all", "family"]) == {"per-class"}
    assert set(rows.loc[rows["fold_id"] != "all", "family"]) == {"per-class per-domain"}
    # Per domain: the class the arm loses is below full on every domain (3 seeds a domain: its
    # intervals are wide), and no other class is decided anywhere.
    per_domain = rows[(rows["metric"] == "auroc") & (rows["fold_id"] != "all")]
    assert set(per_domain["fold_id"]) == {f"lodo:{d}" for d in DOMAINS} and (per_domain["n_folds"] == 1).all()
    assert (per_domain.loc[per_domain["class"] == "RBBB", "diff"] < -0.1).all()
    assert ((per_domain["diff_lo"] <= per_domain["diff"]) & (per_domain["diff"] <= per_domain["diff_hi"])).all()
    assert not per_domain.loc[per_domain["class"] != "RBBB", "decision"].isin(["better", "worse"]).any()
    rows = rows[rows["fold_id"] == "all"]
    auroc = rows[rows["metric"] == "auroc"].set_index("class")
    assert auroc.loc["RBBB", "decision"] == "worse" and auroc.loc["RBBB", "diff_hi"] < 0
    assert auroc.loc["RBBB", "n_folds"] == len(DOMAINS)
    others = auroc.drop(index="RBBB")
    assert not others["decision"].isin(["better", "worse"]).any()
    assert (others["diff_lo"] < 0).all() and (others["diff_hi"] > 0).all()  # the null classes' intervals hold 0
    # Holm over the metric's arm x class family: the adjusted p is at least the raw one.
    assert (rows["p_holm"] >= rows["p_claim"] - 1e-12).all()
