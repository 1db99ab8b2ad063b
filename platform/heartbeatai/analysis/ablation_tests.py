"""The ablation_tests table from the stored predictions of every arm's runs (docs/analysis.md).

Per protocol with arms, per tested metric, per arm against `full` (an algorithm arm's against
`full` as the ERM configuration): one row per held-out
domain (scope "fold": ablation_stats.fold_estimate, records and seeds) and one row across
them (scope "across": the random-effects pooling of the fold estimates). Each row makes at
most one claim, decided by Holm over its declared family with a Monte Carlo band
(decisions.py). Only the runs' test predictions, deployed thresholds and (to tell an arm
identical to `full`) the trials' configurations are read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from heartbeatai.analysis.ablation_stats import Estimate, across_domains, fold_estimate
from heartbeatai.analysis.decisions import (
    CLAIMS, IDENTICAL, PER_CLASS, PER_CLASS_DOMAIN, claim_of, decide, family_of, holm, mc_variance_factor,
)
from heartbeatai.analysis.evaluation import prediction_classes, run_predictions
from heartbeatai.analysis.macro_intervals import MACRO_AUPRC_MIN_POSITIVES, auprc_classes
from heartbeatai.analysis.weighted_metrics import bootstrap_counts
from heartbeatai.arms import FULL, SEARCH, canonical_arm, is_reference
from heartbeatai.metric_names import CLASS_METRICS, metric_mode
from heartbeatai.metrics import weighted_class_metrics
from heartbeatai.protocols import LODO
from heartbeatai.results.schema import ACROSS_FOLDS

# Metrics the arms are compared on: weighted metrics the bootstrap can recompute per replicate.
TESTED_METRICS = ("macro_auroc", "macro_f1", "macro_auprc", "brier")
_CLASS_METRIC_OF = {"macro_auroc": "auroc", "macro_f1": "f1", "macro_auprc": "auprc", "brier": "brier"}


@dataclass(frozen=True)
class ComparisonSettings:
    n_boot: int
    seed: int
    rope: float
    decision_probability: float
    # The test-set counterpart of the study's selection metric: its across-domain comparisons
    # in LODO are the confirmatory family.
    primary_metric: str = "macro_auroc"
    # A class enters a domain's per-class comparison with at least this many test positives.
    min_positives: int = 5


@dataclass
class Comparison:
    """One row's estimate, recomputable with the record variances scaled (the Monte Carlo band)."""

    row: dict
    folds: list[Estimate] = field(default_factory=list)  # the fold estimates it pools (across rows)

    def estimate(self, factor: float) -> Estimate:
        scaled = [f.with_record_variance_scaled(factor) for f in self.folds]
        return across_domains(scaled) if self.row["scope"] == "across" else scaled[0]


def ablation_test_rows(predictions: pd.DataFrame, class_metrics: pd.DataFrame, study: str,
                       settings: ComparisonSettings, progress: Callable[[str], None] = lambda _: None,
                       trials: pd.DataFrame | None = None, class_rows: list | None = None) -> pd.DataFrame:
    """Every row of ablation_tests for `study` (arm runs only: selection "val", arms not `search`).

    `class_rows`, when given, receives the class_tests table's rows (one frame), computed on
    the same bootstrap replicates."""
    runs = predictions[(predictions["split"] == "test") & (predictions["selection"] == "val")
                       & (predictions["arm"] != SEARCH)]
    thresholds = class_metrics[(class_metrics["label_set"] == "noisy") & (class_metrics["selection"] == "val")]
    comparisons: list[Comparison] = []
    per_class: list[Comparison] = []
    for protocol, in_protocol in runs.groupby("protocol", sort=True):
        arms = [a for a in dict.fromkeys(map(canonical_arm, in_protocol["arm"])) if a != FULL]
        if not arms or FULL not in set(in_protocol["arm"]):
            continue
        folds = sorted(in_protocol["fold_id"].unique())
        progress(f"ablation tests: {protocol}, {len(arms)} arm(s) x {len(folds)} fold(s)")
        per_fold = {fold: _fold_values(in_protocol[in_protocol["fold_id"] == fold], thresholds, settings, fold)
                    for fold in folds}
        identical = _identical_to_full(trials, protocol, folds, arms)
        for metric in TESTED_METRICS:
            comparisons += _metric_comparisons(study, protocol, metric, arms, folds, per_fold, identical, settings)
        per_class += _class_comparisons(study, protocol, arms, folds, per_fold, identical, settings)
    if class_rows is not None:
        class_rows.append(class_test_rows(per_class, settings))
    if not comparisons:
        return pd.DataFrame()
    return decided_rows(comparisons, settings)


def _fold_values(fold_runs: pd.DataFrame, thresholds: pd.DataFrame, settings: ComparisonSettings, fold: str) -> dict:
    """arm -> seed -> metric -> (B + 1,) values of every run of one fold, on shared weights."""
    classes = prediction_classes(fold_runs)
    first = fold_runs.drop_duplicates("record_id").sort_values("record_id")
    n = len(first)
    weights = np.vstack([np.ones(n), bootstrap_counts(n, settings.n_boot, [settings.seed, zlib.crc32(fold.encode())])])
    present = run_predictions(first, classes).y
    used = present.any(axis=0) & (~present).any(axis=0)  # one fixed class set per fold
    # Each metric averages the class set fold_metrics reports it over (evaluation.py).
    averaged = {metric: used for metric in TESTED_METRICS} | {"macro_auprc": auprc_classes(present, used)}
    values: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    own_fold = thresholds[thresholds["fold_id"] == fold]
    for (arm, seed, trial_id), run in fold_runs.groupby(["arm", "seed", "trial_id"], sort=True):
        arrays = run_predictions(run, classes)
        own = own_fold[(own_fold["arm"] == arm) & (own_fold["seed"] == seed) & (own_fold["trial_id"] == trial_id)]
        cut = own.set_index("class")["threshold"].reindex(classes).to_numpy(dtype=float)
        per_class = weighted_class_metrics(arrays.y, arrays.scores, arrays.scores >= cut, weights)
        values.setdefault(canonical_arm(arm), {})[int(seed)] = {
            **{metric: np.nanmean(per_class[_CLASS_METRIC_OF[metric]][:, averaged[metric]], axis=1)
               for metric in TESTED_METRICS if averaged[metric].any()},
            _PER_CLASS: {metric: per_class[metric] for metric in CLASS_METRICS}}
    values["_n_records"] = n
    values["_classes"] = classes
    values["_positives"] = present.sum(axis=0)
    return values


def _identical_to_full(trials: pd.DataFrame | None, protocol: str, folds: list[str], arms: list[str]) -> set:
    """(fold, arm) pairs whose runs trained `full`'s resolved configuration (seed aside): the
    arm's override was already the fold's selection (loss-bce where the search chose BCE)."""
    if trials is None or trials.empty:
        return set()
    runs = trials[(trials["protocol"] == protocol) & (trials["selection"] == "val")].drop_duplicates(
        "trial_id", keep="last")
    columns = [c for c in runs.columns if c.startswith("cfg.") and c != "cfg.seed"]
    identical = set()
    for fold in folds:
        in_fold = runs[runs["fold_id"] == fold]
        configs = {arm: {tuple(map(_comparable, row)) for row in in_fold.loc[in_fold["arm"].map(canonical_arm) == arm,
                                                                              columns].itertuples(index=False)}
                   for arm in [FULL, *arms]}
        identical |= {(fold, arm) for arm in arms if configs[arm] and configs[arm] == configs[FULL]}
    return identical


def _comparable(value):
    return None if not isinstance(value, (list, str)) and pd.isna(value) else value


def _metric_comparisons(study, protocol, metric, arms, folds, per_fold, identical, settings) -> list[Comparison]:
    sign = 1.0 if metric_mode(metric) == "max" else -1.0  # differences oriented: positive = arm better
    out = []
    for arm in arms:
        base = {"study": study, "protocol": protocol, "metric": metric, "arm": arm, "reference": is_reference(arm)}
        fold_estimates, n_same, n_without = [], 0, 0
        for fold in folds:
            values = per_fold[fold]
            # Seed s of the arm pairs with seed s of full (the floor is written at every arm seed).
            seeds = sorted(s for s in set(values.get(FULL, {})) & set(values.get(arm, {}))
                           if metric in values[FULL][s] and metric in values[arm][s])
            if not seeds:
                n_without += any(metric not in v for v in values.get(FULL, {}).values())
                continue
            full = np.stack([values[FULL][s][metric] for s in seeds], axis=1) * sign
            arm_values = np.stack([values[arm][s][metric] for s in seeds], axis=1) * sign
            estimate = fold_estimate(full, arm_values)
            same = (fold, arm) in identical
            n_same += same
            if not same:
                fold_estimates.append(estimate)
            out.append(Comparison({
                **base, "scope": "fold", "fold_id": fold, "n_folds": 1, "n_seeds": len(seeds),
                "n_records": int(values["_n_records"]), "mean_full": float(full[0].mean() * sign),
                "mean_arm": float(arm_values[0].mean() * sign), "identical": same,
                "family": family_of(arm, False), "method": _fold_method(estimate) + _class_set(metric)},
                [estimate]))
        if fold_estimates:
            differences = np.array([f.difference for f in fold_estimates])
            confirmatory = protocol == LODO and metric == settings.primary_metric
            out.append(Comparison({
                **base, "scope": "across", "fold_id": ACROSS_FOLDS, "n_folds": len(fold_estimates),
                "n_seeds": min(f.n_seeds for f in fold_estimates), "identical": False,
                "n_better": int(np.sum(differences > 0)), "n_worse": int(np.sum(differences < 0)),
                "family": family_of(arm, confirmatory),
                "method": ("random-effects meta-analysis of the domains' estimates (Paule-Mandel tau^2, "
                           "modified Knapp-Hartung, t with k - 1 df)" + _class_set(metric)
                           + (f"; {n_same} domain(s) where the arm is full left out" if n_same else "")
                           + (f"; {n_without} domain(s) without a class to average left out" if n_without else ""))},
                fold_estimates))
    return out


_PER_CLASS = "_per_class"  # a run's (B + 1, classes) replicates of each class metric


def _class_comparisons(study, protocol, arms, folds, per_fold, identical, settings) -> list[Comparison]:
    """Per class metric, arm and class: the arm minus full on each held-out domain where the
    class has at least `settings.min_positives` test positives, and pooled across them (the
    rare-class heat map, across domains or on one)."""
    out = []
    for metric in CLASS_METRICS:
        sign = 1.0 if metric_mode(metric) == "max" else -1.0
        for arm in arms:
            estimates: dict[str, list[Estimate]] = {}
            positives: dict[str, int] = {}
            seeds_used: dict[str, int] = {}
            for fold in folds:
                values = per_fold[fold]
                if (fold, arm) in identical:
                    continue
                seeds = sorted(set(values.get(FULL, {})) & set(values.get(arm, {})))
                for c, name in enumerate(values["_classes"]):
                    if not seeds or values["_positives"][c] < settings.min_positives:
                        continue
                    full = np.stack([values[FULL][s][_PER_CLASS][metric][:, c] for s in seeds], axis=1) * sign
                    arm_values = np.stack([values[arm][s][_PER_CLASS][metric][:, c] for s in seeds], axis=1) * sign
                    estimate = fold_estimate(full, arm_values)
                    estimates.setdefault(name, []).append(estimate)
                    out.append(Comparison({
                        "study": study, "protocol": protocol, "metric": metric, "arm": arm, "class": name,
                        "reference": is_reference(arm), "scope": "fold", "fold_id": fold, "n_folds": 1,
                        "n_seeds": len(seeds), "positives": int(values["_positives"][c]), "identical": False,
                        "family": PER_CLASS_DOMAIN,
                        "method": _fold_method(estimate) + "; Holm over every arm x class x domain of this metric"},
                        [estimate]))
                    positives[name] = positives.get(name, 0) + int(values["_positives"][c])
                    seeds_used[name] = min(seeds_used.get(name, len(seeds)), len(seeds))
            for name, found in estimates.items():
                out.append(Comparison({
                    "study": study, "protocol": protocol, "metric": metric, "arm": arm, "class": name,
                    "reference": is_reference(arm), "scope": "across", "fold_id": ACROSS_FOLDS,
                    "n_folds": len(found), "n_seeds": seeds_used[name], "positives": positives[name],
                    "identical": False, "family": PER_CLASS,
                    "method": (f"per domain with >= {settings.min_positives} test positives: paired bootstrap over "
                               "records + seed variance; across them random effects (modified Knapp-Hartung); "
                               "Holm over every arm x class of this metric")}, found))
    return out


CLASS_TEST_COLUMNS = ("study", "protocol", "metric", "arm", "class", "fold_id", "reference", "n_folds", "n_seeds",
                      "positives",
                      "diff", "diff_lo", "diff_hi", "se", "df", "tau2", "conditional", "p_value", "p_better",
                      "p_equivalent", "p_worse", "rope", "family", "claim", "p_claim", "p_holm", "p_holm_low",
                      "p_holm_high", "decision", "method")


def class_test_rows(comparisons: list[Comparison], settings: ComparisonSettings) -> pd.DataFrame:
    """The class_tests table: each class metric's comparisons decided in their Holm families
    (across domains; single domains)."""
    frames = []
    for protocol, metric in dict.fromkeys((c.row["protocol"], c.row["metric"]) for c in comparisons):
        chosen = [c for c in comparisons if (c.row["protocol"], c.row["metric"]) == (protocol, metric)]
        frames.append(decided_rows(chosen, settings))
    if not frames:
        return pd.DataFrame(columns=list(CLASS_TEST_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(CLASS_TEST_COLUMNS)]


def _class_set(metric: str) -> str:
    return (f"; over each domain's classes with >= {MACRO_AUPRC_MIN_POSITIVES} test positives"
            if metric == "macro_auprc" else "")


def _fold_method(estimate: Estimate) -> str:
    if estimate.conditional:
        return (f"paired bootstrap over test records, conditional on the trained model ({estimate.n_seeds} seed: "
                "seed variance needs two); t reference")
    return (f"paired bootstrap over test records + seed variance over {estimate.n_seeds} seeds; "
            "t with Welch-Satterthwaite df")


def decided_rows(comparisons: list[Comparison], settings: ComparisonSettings) -> pd.DataFrame:
    """The rows with their estimates, claims and family-wise decisions (decisions.py)."""
    band = mc_variance_factor(settings.n_boot)
    factors = {"p_holm": 1.0, "p_holm_low": 1.0 - band, "p_holm_high": 1.0 + band}
    rows = []
    for comparison in comparisons:
        estimate = comparison.estimate(1.0)
        low, high = estimate.interval()
        claim, p_claim = claim_of(estimate, settings.rope)
        row = {**comparison.row, "diff": estimate.difference, "diff_lo": low, "diff_hi": high, "se": estimate.se,
               "df": estimate.df, "tau2": estimate.tau2, "conditional": estimate.conditional,
               "p_value": estimate.p_value(), **estimate.confidence(settings.rope), "rope": settings.rope,
               "claim": IDENTICAL if _row_identical(comparison) else claim, "p_claim": p_claim}
        for column, factor in factors.items():
            row[f"_p_{column}"] = _claim_p(comparison.estimate(factor), settings.rope, claim)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in factors:
        frame[column] = np.nan
    in_family = frame["claim"].isin(CLAIMS)
    reference = frame["reference"].astype(bool)
    for _, index in frame[in_family & ~reference].groupby("family").groups.items():
        for column in factors:
            frame.loc[index, column] = holm(frame.loc[index, f"_p_{column}"].to_numpy(dtype=float))
    # A reference row (the plain baseline, the prevalence floor) is shown beside the ablations,
    # outside their family (arms.py): its p stands alone, and adds nothing to theirs.
    for column in factors:
        frame.loc[in_family & reference, column] = frame.loc[in_family & reference, f"_p_{column}"]
    # Pooled across domains, the adjusted p need not be monotone in the record variance (tau^2
    # and the Knapp-Hartung scale move with it): the band is the range over the three.
    ends = frame[list(factors)].to_numpy(dtype=float)
    finite = np.isfinite(ends).all(axis=1)
    frame.loc[finite, "p_holm_low"] = ends[finite].min(axis=1)
    frame.loc[finite, "p_holm_high"] = ends[finite].max(axis=1)
    frame["decision"] = [decide(row, settings.decision_probability) for row in frame.to_dict("records")]
    return frame.drop(columns=[f"_p_{column}" for column in factors])


def _row_identical(comparison: Comparison) -> bool:
    return bool(comparison.row.get("identical"))


def _claim_p(estimate: Estimate, rope: float, claim: str) -> float:
    """The p-value of `claim` (fixed at the point estimate's choice) under another variance."""
    confidence = estimate.confidence(rope)
    if claim == "equivalent":
        return 1.0 - confidence["p_equivalent"]
    if claim in ("better", "worse"):
        return min(1.0, 2.0 * (1.0 - confidence[f"p_{claim}"]))
    return float("nan")
