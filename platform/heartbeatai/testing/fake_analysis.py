"""The fake store's analysis tables (results schema 3): degradation and ablation_tests.

Drawn, not computed from predictions, but with the structure the real analysis guarantees
(docs/analysis.md), so a reader can be tested against it: the degradation parts are drawn
and summed, so they add up to the total exactly, their intervals conditional on the models;
the EM and BBSE prevalence estimates are flagged far from the test prevalence by the
analysis' own rule; ablation differences come from the fake's
own fold_metrics, oriented so that positive means the arm is better; with fewer than 3 arm
seeds a fold's interval is conditional and carries no p-value; Holm runs over the ablation
arms x held-out domains of one metric, the references outside it; the across-fold
posteriors sum to 1 and decide by the rule P >= decision_probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from heartbeatai.analysis.ablation_stats import MIN_SEEDS_FOR_SEED_VARIANCE, decide
from heartbeatai.analysis.prior_shift import far_from_truth
from heartbeatai.arms import FULL, is_reference
from heartbeatai.metric_names import FOLD_METRICS
from heartbeatai.results.schema import ACROSS_FOLDS, PREVALENCE_ESTIMATORS

# The analysis' defaults (docs/analysis.md): analysis.min_positives, .rope, .decision_probability.
MIN_POSITIVES = 10
ROPE = 0.01
DECISION_PROBABILITY = 0.95
BOOTSTRAP = 2000
FOLD_METHOD = "paired bootstrap over test records"
ACROSS_METHOD = "Bayesian signed-rank test (Benavoli et al. 2017), baycomp"


# -- degradation ----------------------------------------------------------------------------

def degradation(rng, held_out: list[str], matched: list[str], abbrs: list[str], prevalence: pd.DataFrame,
                sizes: pd.Series, seeds: int, intra_k: int) -> pd.DataFrame:
    """Per class x held-out domain, present classes only. A domain with a matched-size
    reference pairs on all of its records; one with intra folds only on the records of the
    one intra fold the fake runs (of ``intra_k``), as the analysis says how many."""
    rows = []
    for domain in held_out:
        kind = "reference" if domain in matched else "intra"
        n_records = int(sizes[domain]) // (1 if kind == "reference" else intra_k)
        train_lodo = prevalence.drop(index=domain).mean() if len(prevalence) > 1 else prevalence.loc[domain]
        train_reference = prevalence.mean() if kind == "reference" else prevalence.loc[domain]
        for abbr in abbrs:
            test_prev = float(prevalence.loc[domain, abbr])
            n_positives = int(np.rint(test_prev * n_records))
            if not 0 < n_positives < n_records:
                continue  # a best threshold is undefined: the class is not split
            rarity = float(np.log(0.3 / np.clip(train_lodo[abbr], 0.003, 0.3)))
            prior_shift = float(abs(np.log(test_prev / train_lodo[abbr])))
            f1_reference = float(np.clip(0.75 - 0.04 * rarity + rng.normal(0, 0.03), 0.05, 0.95))
            parts = {"prevalence": -0.03 * prior_shift + rng.normal(0, 0.01),
                     "threshold": rng.normal(-0.015, 0.015),
                     "ranking": -abs(rng.normal(0.01 + 0.015 * rarity, 0.015))}
            total = sum(parts.values())
            if f1_reference + total < 0.01:  # an F1 cannot fall below 0: shrink the parts alike
                parts = {name: value * (f1_reference - 0.01) / -total for name, value in parts.items()}
            parts["total"] = parts["prevalence"] + parts["threshold"] + parts["ranking"]
            half = 0.6 / np.sqrt(n_positives)
            row = dict(domain=domain, **{"class": abbr}, label_set="noisy", reference_kind=kind, n_records=n_records,
                       n_positives=n_positives, n_seeds=seeds, interval_reliable=n_positives >= MIN_POSITIVES,
                       conditional=True, f1_reference=f1_reference, f1_lodo=f1_reference + parts["total"])
            for name, value in parts.items():
                width = half * (1.0 if name == "total" else 0.7)
                row |= {name: value, f"{name}_lo": value - width, f"{name}_hi": value + width}
            auroc_reference = float(np.clip(0.93 - 0.02 * rarity + rng.normal(0, 0.015), 0.6, 0.995))
            auroc_lodo = float(np.clip(auroc_reference + 0.6 * parts["ranking"] + rng.normal(0, 0.005), 0.5, 0.995))
            change = auroc_lodo - auroc_reference
            row |= dict(auroc_reference=auroc_reference, auroc_lodo=auroc_lodo, auroc_change=change,
                        auroc_change_lo=change - half / 2, auroc_change_hi=change + half / 2,
                        test_prevalence=test_prev, train_prevalence_lodo=float(train_lodo[abbr]),
                        train_prevalence_reference=float(train_reference[abbr]),
                        test_calibration_error_lodo=float(rng.uniform(0.01, 0.06)),
                        test_calibration_error_reference=float(rng.uniform(0.01, 0.04)))
            # EM trusts a calibration that may not carry over (often far on the LODO side); BBSE
            # is unbiased under label shift but noisy for a rare class.
            estimates = dict(em_prevalence_lodo=test_prev * float(np.exp(rng.normal(0.3, 0.8))),
                             em_prevalence_reference=test_prev * float(np.exp(rng.normal(0, 0.15))),
                             bbse_prevalence_lodo=test_prev * float(np.exp(rng.normal(0, 0.3))),
                             bbse_prevalence_reference=test_prev * float(np.exp(rng.normal(0, 0.2))))
            row |= {name: float(np.clip(value, 0.0, 1.0)) for name, value in estimates.items()}
            row |= {f"{estimator}_far_{side}": bool(far_from_truth(row[f"{estimator}_prevalence_{side}"], test_prev))
                    for estimator in PREVALENCE_ESTIMATORS for side in ("lodo", "reference")}
            rows.append(row)
    return pd.DataFrame(rows)


def rarity_contrast(degradation_rows: pd.DataFrame) -> pd.DataFrame:
    """The real rarity_contrast rows over the fake degradation cells."""
    from heartbeatai.analysis.rarity_contrast import ContrastCell, rarity_contrast_rows

    cells = [ContrastCell(row["domain"], row["class"], row["label_set"], row["reference_kind"],
                          int(row["n_positives"]), float(row["train_prevalence_lodo"]),
                          float(row["f1_lodo"]), float(row["f1_reference"]))
             for row in degradation_rows.to_dict("records")]
    study = degradation_rows["study"].iloc[0] if "study" in degradation_rows and len(degradation_rows) else "fake"
    return rarity_contrast_rows(cells, study)


# -- ablation tests -------------------------------------------------------------------------

def ablation_tests(rng, fold_metrics: pd.DataFrame, rope: float = ROPE,
                   decision_probability: float = DECISION_PROBABILITY) -> pd.DataFrame:
    """Per metric x arm: a row per held-out domain (scope "fold") and one across them
    (scope "across"), from the seed-averaged test figures of ``fold_metrics``."""
    test = fold_metrics[(fold_metrics["split"] == "test") & (fold_metrics["selection"] == "val")]
    means = test.groupby(["protocol", "metric", "fold_id", "arm"])["value"].agg(["mean", "size"])
    rows = []
    for (protocol, metric), group in means.groupby(level=["protocol", "metric"]):
        sign = 1.0 if FOLD_METRICS[metric].mode == "max" else -1.0
        per_metric = []
        for arm in sorted(set(group.index.get_level_values("arm")) - {FULL}):
            per_fold = []
            for fold_id in sorted(set(group.index.get_level_values("fold_id"))):
                if (protocol, metric, fold_id, arm) not in group.index:
                    continue
                full = group.loc[(protocol, metric, fold_id, FULL)]
                ablated = group.loc[(protocol, metric, fold_id, arm)]
                per_fold.append(_fold_row(rng, protocol, metric, arm, fold_id, sign, float(full["mean"]),
                                          float(ablated["mean"]), int(ablated["size"])))
            per_metric.extend(per_fold)
            per_metric.append(_across_row(rng, protocol, metric, arm, per_fold, rope, decision_probability))
        _holm(per_metric)
        rows.extend(per_metric)
    return pd.DataFrame(rows)


def _fold_row(rng, protocol, metric, arm, fold_id, sign, mean_full, mean_arm, n_seeds) -> dict:
    diff = sign * (mean_arm - mean_full)
    conditional = n_seeds < MIN_SEEDS_FOR_SEED_VARIANCE
    # Resampling seeds as well as records widens the interval: seed variance is in it.
    se = (0.003 if conditional else 0.005) * float(np.exp(rng.normal(0, 0.2)))
    p_value = None
    if not conditional:
        z = abs(diff) / se
        p_value = float(min(1.0, max(2 / (BOOTSTRAP + 1), 2 * _normal_tail(z))))
    return dict(protocol=protocol, metric=metric, arm=arm, scope="fold", fold_id=fold_id, reference=is_reference(arm),
                n_seeds=n_seeds, mean_full=mean_full, mean_arm=mean_arm, diff=diff, diff_lo=diff - 1.96 * se,
                diff_hi=diff + 1.96 * se, conditional=conditional, p_value=p_value,
                method=FOLD_METHOD + ("" if conditional else " and seeds"))


def _across_row(rng, protocol, metric, arm, per_fold: list[dict], rope: float, decision_probability: float) -> dict:
    d = np.array([row["diff"] for row in per_fold])
    n = len(d)
    posterior = dict(p_better=None, p_equivalent=None, p_worse=None)
    decided = "undecided"
    if n >= 2:
        # A stand-in for the signed-rank posterior: the mean difference, t-distributed over domains.
        spread = max(float(np.std(d, ddof=1)), 0.002) / np.sqrt(n)
        draws = float(np.mean(d)) + spread * rng.standard_t(n - 1, 20000)
        better, worse = float(np.mean(draws > rope)), float(np.mean(draws < -rope))
        posterior = dict(p_better=better, p_equivalent=1.0 - better - worse, p_worse=worse)
        decided = decide(posterior, decision_probability)
    return dict(protocol=protocol, metric=metric, arm=arm, scope="across", fold_id=ACROSS_FOLDS,
                reference=is_reference(arm), n_folds=n, n_seeds=min((r["n_seeds"] for r in per_fold), default=None),
                mean_full=float(np.mean([r["mean_full"] for r in per_fold])) if n else None,
                mean_arm=float(np.mean([r["mean_arm"] for r in per_fold])) if n else None,
                diff=float(d.mean()) if n else None, n_better=int(np.sum(d > 0)), n_worse=int(np.sum(d < 0)),
                **posterior, rope=rope, min_attainable_p=min(1.0, 2.0 * 2.0 ** -n), decision=decided,
                method=ACROSS_METHOD)


def _holm(rows: list[dict]) -> None:
    """Holm over one metric's family: ablation arms x held-out domains that have a p-value."""
    family = [row for row in rows if row["scope"] == "fold" and not row["reference"] and row["p_value"] is not None]
    family.sort(key=lambda row: row["p_value"])
    running = 0.0
    for rank, row in enumerate(family):
        running = max(running, min(1.0, (len(family) - rank) * row["p_value"]))
        row["p_holm"] = running


def _normal_tail(z: float) -> float:
    from math import erfc, sqrt

    return 0.5 * erfc(z / sqrt(2))
