"""The ablation_tests table from the stored predictions of every arm's runs (docs/analysis.md).

Per protocol with arms, per tested metric, per arm against `full`: one row per held-out
domain (scope "fold": the paired bootstrap of ablation_stats.fold_comparison) and one row
across them (scope "across": sign counts and the Bayesian signed-rank posterior). Holm's
correction runs over the per-fold p-values of one metric, the family being the ablation
arms x held-out domains; the baseline and the prevalence floor are reference rows outside
the family. Only the runs' test predictions and deployed thresholds are read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from heartbeatai.analysis.ablation_stats import (
    MIN_SEEDS_FOR_SEED_VARIANCE, FoldComparison, across_folds, decide, fold_comparison, minimum_attainable_p,
)
from heartbeatai.analysis.evaluation import prediction_classes, run_predictions
from heartbeatai.analysis.weighted_metrics import bootstrap_counts
from heartbeatai.arms import FULL, SEARCH, canonical_arm, is_reference
from heartbeatai.metric_names import metric_mode
from heartbeatai.metrics import weighted_class_metrics
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
    alpha: float = 0.05
    # baycomp draws the posterior by Monte Carlo (in Python): 50,000 draws put P(.) within
    # about 0.002; a test can ask for fewer.
    posterior_samples: int = 50_000


def ablation_test_rows(predictions: pd.DataFrame, class_metrics: pd.DataFrame, study: str,
                       settings: ComparisonSettings, progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """Every row of ablation_tests for `study` (arm runs only: selection "val", arms not `search`)."""
    runs = predictions[(predictions["split"] == "test") & (predictions["selection"] == "val")
                       & (predictions["arm"] != SEARCH)]
    thresholds = class_metrics[(class_metrics["label_set"] == "noisy") & (class_metrics["selection"] == "val")]
    rows = []
    for protocol, in_protocol in runs.groupby("protocol", sort=True):
        arms = [a for a in dict.fromkeys(map(canonical_arm, in_protocol["arm"])) if a != FULL]
        if not arms or FULL not in set(in_protocol["arm"]):
            continue
        folds = sorted(in_protocol["fold_id"].unique())
        progress(f"ablation tests: {protocol}, {len(arms)} arm(s) x {len(folds)} fold(s)")
        per_fold = {fold: _fold_values(in_protocol[in_protocol["fold_id"] == fold], thresholds, settings, fold)
                    for fold in folds}
        for metric in TESTED_METRICS:
            rows += _metric_rows(study, protocol, metric, arms, folds, per_fold, settings)
    frame = pd.DataFrame(rows)
    return _with_holm(frame) if not frame.empty else frame


def _fold_values(fold_runs: pd.DataFrame, thresholds: pd.DataFrame, settings: ComparisonSettings, fold: str) -> dict:
    """arm -> seed -> metric -> (B + 1,) values of every run of one fold, on shared weights."""
    classes = prediction_classes(fold_runs)
    first = fold_runs.drop_duplicates("record_id").sort_values("record_id")
    n = len(first)
    weights = np.vstack([np.ones(n), bootstrap_counts(n, settings.n_boot, [settings.seed, zlib.crc32(fold.encode())])])
    present = run_predictions(first, classes).y
    used = present.any(axis=0) & (~present).any(axis=0)  # one fixed class set per fold
    values: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    own_fold = thresholds[thresholds["fold_id"] == fold]
    for (arm, seed, trial_id), run in fold_runs.groupby(["arm", "seed", "trial_id"], sort=True):
        arrays = run_predictions(run, classes)
        own = own_fold[(own_fold["arm"] == arm) & (own_fold["seed"] == seed) & (own_fold["trial_id"] == trial_id)]
        cut = own.set_index("class")["threshold"].reindex(classes).to_numpy(dtype=float)
        per_class = weighted_class_metrics(arrays.y, arrays.scores, arrays.scores >= cut, weights)
        values.setdefault(canonical_arm(arm), {})[int(seed)] = {
            metric: np.nanmean(per_class[_CLASS_METRIC_OF[metric]][:, used], axis=1) for metric in TESTED_METRICS}
    values["_n_records"] = n
    return values


def _metric_rows(study, protocol, metric, arms, folds, per_fold, settings) -> list[dict]:
    sign = 1.0 if metric_mode(metric) == "max" else -1.0  # differences oriented: positive = arm better
    rows = []
    for arm in arms:
        differences = []
        base = {"study": study, "protocol": protocol, "metric": metric, "arm": arm, "reference": is_reference(arm)}
        for fold in folds:
            values = per_fold[fold]
            # Seed s of the arm pairs with seed s of full (the floor is written at every arm seed).
            seeds = sorted(set(values.get(FULL, {})) & set(values.get(arm, {})))
            if not seeds:
                continue
            full = np.stack([values[FULL][s][metric] for s in seeds], axis=1) * sign
            arm_values = np.stack([values[arm][s][metric] for s in seeds], axis=1) * sign
            rng = np.random.default_rng([settings.seed, zlib.crc32(f"{fold}|{arm}|{metric}".encode())])
            draws = rng.integers(0, len(seeds), size=(full.shape[0] - 1, len(seeds)))
            comparison = fold_comparison(full, arm_values, draws)
            differences.append(comparison.difference)
            rows.append({**base, "scope": "fold", "fold_id": fold, "n_folds": 1, "n_seeds": len(seeds),
                         "n_records": int(values["_n_records"]), "mean_full": float(full[0].mean() * sign),
                         "mean_arm": float(arm_values[0].mean() * sign), **_fold_columns(comparison, settings.n_boot)})
        if differences:
            posterior = across_folds(np.array(differences), settings.rope, seed=settings.seed, alpha=settings.alpha,
                                     samples=settings.posterior_samples)
            rows.append({
                **base, "scope": "across", "fold_id": ACROSS_FOLDS, "n_folds": posterior.n_folds,
                "diff": posterior.mean_difference, "n_better": posterior.n_better, "n_worse": posterior.n_worse,
                "p_better": posterior.p_better, "p_equivalent": posterior.p_equivalent, "p_worse": posterior.p_worse,
                "rope": settings.rope, "min_attainable_p": posterior.min_attainable_p, "p_value": posterior.wilcoxon_p,
                "decision": decide({"p_better": posterior.p_better, "p_equivalent": posterior.p_equivalent,
                                    "p_worse": posterior.p_worse}, settings.decision_probability),
                "method": "Bayesian signed-rank (Benavoli et al. 2017, baycomp) over held-out domains; "
                          + ("Wilcoxon signed-rank p" if posterior.wilcoxon_p is not None else
                             f"no frequentist p: {posterior.n_folds} domains cannot reach p < "
                             f"{minimum_attainable_p(posterior.n_folds):.3g}"),
            })
    return rows


def _fold_columns(comparison: FoldComparison, n_boot: int) -> dict:
    if comparison.conditional:
        method = (f"paired bootstrap over test records, conditional on the trained models "
                  f"({comparison.n_seeds} seed(s): seed variance needs >= {MIN_SEEDS_FOR_SEED_VARIANCE})")
    else:
        method = "paired bootstrap over test records and seeds (jointly for both arms)"
    return {"diff": comparison.difference, "diff_lo": comparison.low, "diff_hi": comparison.high,
            "conditional": comparison.conditional, "p_value": comparison.p_value, "method": method,
            # The bootstrap p counts replicates: never below 2 / (B + 1).
            "min_attainable_p": None if comparison.conditional else 2 / (n_boot + 1)}


def _with_holm(frame: pd.DataFrame) -> pd.DataFrame:
    """Holm over the per-fold p-values of each protocol x metric, ablations only."""
    frame = frame.copy()
    frame["p_holm"] = np.nan
    family = (frame["scope"] == "fold") & ~frame["reference"].astype(bool) & frame["p_value"].notna()
    for _, index in frame[family].groupby(["protocol", "metric"]).groups.items():
        adjusted = multipletests(frame.loc[index, "p_value"].to_numpy(dtype=float), method="holm")[1]
        frame.loc[index, "p_holm"] = adjusted
    return frame
