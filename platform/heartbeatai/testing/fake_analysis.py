"""The fake store's analysis tables (results schema 3): degradation, ablation_tests, algorithm_parts.

Drawn, not computed from predictions, but with the structure the real analysis guarantees
(docs/analysis.md), so a reader can be tested against it: the degradation parts are drawn
and summed, so they add up to the total exactly, their intervals conditional on the models;
the EM and BBSE prevalence estimates are flagged far from the test prevalence by the
analysis' own rule; ablation differences come from the fake's own fold_metrics, oriented so
that positive means the arm is better, with drawn record and seed variances that the real
estimates, pooling and family-wise decisions then treat (analysis/ablation_tests.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from heartbeatai.analysis.prior_shift import far_from_truth
from heartbeatai.arms import FULL, is_reference
from heartbeatai.metric_names import FOLD_METRICS
from heartbeatai.results.schema import ACROSS_FOLDS, PREVALENCE_ESTIMATORS

# The analysis' defaults (docs/analysis.md): analysis.min_positives, .rope, .decision_probability.
MIN_POSITIVES = 10
ROPE = 0.01
DECISION_PROBABILITY = 0.95
BOOTSTRAP = 2000
FOLD_METHOD = "paired bootstrap over test records + seed variance; t with Welch-Satterthwaite df"
ACROSS_METHOD = "random-effects meta-analysis (Paule-Mandel, modified Knapp-Hartung)"


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


def algorithm_parts(rng, algorithm_arms: list[str], degradation_rows: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm arm, over the degradation's cells: the split against ERM, parts drawn small
    around 0 (DomainBed's algorithms rarely move ERM by a point) and summed to the total."""
    rows = []
    for arm in algorithm_arms:
        for cell in degradation_rows.to_dict("records"):
            parts = {name: float(rng.normal(0.0, 0.01)) for name in ("prevalence", "threshold", "ranking")}
            parts["total"] = parts["prevalence"] + parts["threshold"] + parts["ranking"]
            change = 0.6 * parts["ranking"]
            half = 0.6 / np.sqrt(cell["n_positives"])
            row = {"arm": arm, **{k: cell[k] for k in ("domain", "class", "label_set", "n_records", "n_positives",
                                                       "n_seeds", "interval_reliable", "conditional")},
                   "train_prevalence": cell["train_prevalence_lodo"], "f1_erm": cell["f1_lodo"],
                   "f1_algorithm": cell["f1_lodo"] + parts["total"], "auroc_change": change,
                   "auroc_change_lo": change - half / 2, "auroc_change_hi": change + half / 2}
            for name, value in parts.items():
                row |= {name: value, f"{name}_lo": value - half, f"{name}_hi": value + half}
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
    (scope "across"), from the seed-averaged test figures of ``fold_metrics``, with drawn
    record and seed variances, estimated, pooled and decided by the real analysis code."""
    from heartbeatai.analysis.ablation_stats import fold_estimate
    from heartbeatai.analysis.ablation_tests import Comparison, ComparisonSettings, decided_rows
    from heartbeatai.analysis.decisions import family_of

    test = fold_metrics[(fold_metrics["split"] == "test") & (fold_metrics["selection"] == "val")]
    means = test.groupby(["protocol", "metric", "fold_id", "arm"])["value"].agg(["mean", "size"])
    comparisons = []
    for (protocol, metric), group in means.groupby(level=["protocol", "metric"]):
        sign = 1.0 if FOLD_METRICS[metric].mode == "max" else -1.0
        for arm in sorted(set(group.index.get_level_values("arm")) - {FULL}):
            base = dict(study="fake", protocol=protocol, metric=metric, arm=arm, reference=is_reference(arm),
                        identical=False)
            estimates = []
            for fold_id in sorted(set(group.index.get_level_values("fold_id"))):
                if (protocol, metric, fold_id, arm) not in group.index:
                    continue
                full = float(group.loc[(protocol, metric, fold_id, FULL)]["mean"])
                ablated = group.loc[(protocol, metric, fold_id, arm)]
                seeds = int(ablated["size"])
                # Replicates around the seeds' points: records move every seed alike (paired).
                spread = rng.normal(0, 0.01, seeds)  # seed to seed, centred: the seeds average to the means'
                points = sign * (float(ablated["mean"]) - full) + spread - spread.mean()
                replicates = points[None, :] + rng.normal(0, 0.004, (BOOTSTRAP // 10, 1))
                arm_values = np.vstack([points, replicates])
                estimate = fold_estimate(np.zeros_like(arm_values), arm_values)
                estimates.append(estimate)
                comparisons.append(Comparison({**base, "scope": "fold", "fold_id": fold_id, "n_folds": 1,
                                               "n_seeds": seeds, "mean_full": full,
                                               "mean_arm": float(ablated["mean"]), "family": family_of(arm, False),
                                               "method": FOLD_METHOD}, [estimate]))
            if estimates:
                d = np.array([e.difference for e in estimates])
                comparisons.append(Comparison({
                    **base, "scope": "across", "fold_id": ACROSS_FOLDS, "n_folds": len(estimates),
                    "n_seeds": min(e.n_seeds for e in estimates), "n_better": int(np.sum(d > 0)),
                    "n_worse": int(np.sum(d < 0)), "method": ACROSS_METHOD,
                    "family": family_of(arm, (protocol, metric) == ("lodo", "macro_auroc"))},
                    estimates))
    if not comparisons:
        return pd.DataFrame()
    return decided_rows(comparisons, ComparisonSettings(BOOTSTRAP // 10, 0, rope, decision_probability)).drop(
        columns="study")


def class_tests(rng, class_metrics: pd.DataFrame, rope: float = ROPE,
                decision_probability: float = DECISION_PROBABILITY) -> pd.DataFrame:
    """Per class metric x arm x class: the arm minus full on each held-out domain where the class
    has at least MIN_POSITIVES test positives and across them, from the seed-averaged class
    figures with drawn record and seed variances, pooled and decided by the real analysis code
    (Holm families per class metric, as analysis/ablation_tests.py decides them)."""
    from heartbeatai.analysis.ablation_stats import fold_estimate
    from heartbeatai.analysis.ablation_tests import Comparison, ComparisonSettings, class_test_rows
    from heartbeatai.analysis.decisions import PER_CLASS, PER_CLASS_DOMAIN
    from heartbeatai.metric_names import CLASS_METRICS

    test = class_metrics[(class_metrics["split"] == "test") & (class_metrics["selection"] == "val")
                         & (class_metrics["label_set"] == "noisy") & (class_metrics["positives"] >= MIN_POSITIVES)]
    comparisons = []
    for metric in CLASS_METRICS:
        means = test.groupby(["protocol", "arm", "class", "fold_id"]).agg(
            value=(metric, "mean"), seeds=("seed", "nunique"), positives=("positives", "first"))
        # Plain dicts and tuples: a MultiIndex lookup per cell cost seconds of every fixture.
        values = means["value"].to_dict()
        for (protocol, arm, name), cells in means.groupby(level=["protocol", "arm", "class"]):
            if arm == FULL:
                continue
            estimates, positives = [], 0
            for (_, _, _, fold_id), value, n_seeds, n_positives in cells.itertuples(name=None):
                full = values.get((protocol, FULL, name, fold_id))
                if full is None or not np.isfinite(value) or not np.isfinite(full):
                    continue
                seeds = int(n_seeds)
                spread = rng.normal(0, 0.02, seeds)
                points = (float(value) - float(full)) + spread - spread.mean()
                replicates = points[None, :] + rng.normal(0, 0.01, (BOOTSTRAP // 10, 1))
                arm_values = np.vstack([points, replicates])
                estimates.append(fold_estimate(np.zeros_like(arm_values), arm_values))
                positives += int(n_positives)
                comparisons.append(Comparison({
                    "study": "fake", "protocol": protocol, "metric": metric, "arm": arm, "class": name,
                    "reference": is_reference(arm), "scope": "fold", "fold_id": fold_id, "n_folds": 1,
                    "n_seeds": seeds, "positives": int(n_positives), "identical": False,
                    "family": PER_CLASS_DOMAIN, "method": "fake: one domain"}, [estimates[-1]]))
            if estimates:
                comparisons.append(Comparison({
                    "study": "fake", "protocol": protocol, "metric": metric, "arm": arm, "class": name,
                    "reference": is_reference(arm), "scope": "across", "fold_id": ACROSS_FOLDS,
                    "n_folds": len(estimates), "n_seeds": min(e.n_seeds for e in estimates), "positives": positives,
                    "identical": False, "family": PER_CLASS, "method": ACROSS_METHOD}, estimates))
    return class_test_rows(comparisons, ComparisonSettings(BOOTSTRAP // 10, 0, rope, decision_probability,
                                                           min_positives=MIN_POSITIVES)).drop(columns="study")
