"""Where does a class lose F1 under LODO? Intra vs LODO per class x test domain, and a split.

For each test domain and class the table puts the intra-source figure (models trained
and tested within the domain, k folds pooled) beside the LODO figure (trained on the
other domains), each with a percentile bootstrap interval over the domain's records and
averaged over seeds, next to the training and test prevalence. Each F1 drop is then
looked at through three diagnostics, each holding everything but one factor fixed:

(a) ranking_part = AUROC_lodo - AUROC_intra. AUROC does not depend on prevalence or on
    a threshold, so this is what domain shift did to the model's ranking of records.
(b) threshold_part = F1_lodo(transferred thresholds) - max over thresholds t of
    F1_lodo(t): the F1 lost by using the threshold tuned on the training domains'
    validation data instead of the best threshold for the test domain (<= 0).
(c) prevalence_part = F1_lodo - F1_lodo reweighted to the training prevalence. With the
    transferred threshold's true and false positive rates on the test domain (TPR,
    FPR), a population of prevalence pi has
        F1(pi) = 2 pi TPR / (pi TPR + pi + (1 - pi) FPR),
    which is the test domain's F1 with every positive weighted pi_train / pi_test and
    every negative (1 - pi_train) / (1 - pi_test). F1(pi_test) is the observed F1, so
    (c) is the F1 the test domain's own prevalence costs (or gives) relative to the
    prevalence the model was trained at; it is exactly 0 when they are equal.

The parts are diagnostics, not additive shares of the drop (F1 is not additive). A
prevalence-only shift shows in (c) and not in (a); a change of signal style shows in
(a) or (b) and not in (c). Label noise is measured separately: with clean labels known
every figure is given against both label sets.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from heartbeatai.results import ResultsStore

from heartbeatai.study.evaluation import (
    bootstrap_counts,
    percentile_interval,
    prediction_classes,
    weighted_class_metrics,
)

log = logging.getLogger(__name__)

DEGRADATION_METRICS = ("f1", "auroc", "auprc")
DEGRADATION_COLUMNS = [
    "study", "domain", "class", "metric", "label_set", "intra", "intra_lo", "intra_hi",
    "lodo", "lodo_lo", "lodo_hi", "delta", "train_prevalence", "test_prevalence",
    "ranking_part", "threshold_part", "prevalence_part",
]


@dataclass(frozen=True)
class DomainRuns:
    """Test predictions of one protocol on one domain, the same records for every seed.

    y (N, C) bool; scores and predicted (S, N, C), ``predicted`` at each run's own
    thresholds; train_prevalence (C,): the class prevalence the models were trained at.
    """

    y: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray
    train_prevalence: np.ndarray


def f1_at_prevalence(tpr: np.ndarray, fpr: np.ndarray, prevalence: np.ndarray) -> np.ndarray:
    """F1 of calls with these true/false positive rates on a population of this prevalence."""
    tpr, fpr, pi = (np.asarray(a, dtype=float) for a in (tpr, fpr, prevalence))
    denominator = pi * tpr + pi + (1 - pi) * fpr
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * pi * tpr / denominator, 0.0)


def best_f1(y: np.ndarray, scores: np.ndarray) -> float:
    """The highest F1 any threshold reaches on this set (the test domain's oracle threshold)."""
    precision, recall, _ = precision_recall_curve(y, scores)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(f1.max())


def f1_drop_parts(runs: DomainRuns) -> tuple[np.ndarray, np.ndarray]:
    """(threshold_part, prevalence_part) per class, averaged over seeds; nan for absent classes."""
    y = runs.y
    n_pos, n_neg = y.sum(axis=0), (~y).sum(axis=0)
    present = (n_pos > 0) & (n_neg > 0)
    test_prevalence = n_pos / y.shape[0]
    threshold_parts, prevalence_parts = [], []
    for scores, predicted in zip(runs.scores, runs.predicted):
        tpr = (predicted & y).sum(axis=0) / np.maximum(n_pos, 1)
        fpr = (predicted & ~y).sum(axis=0) / np.maximum(n_neg, 1)
        observed = f1_at_prevalence(tpr, fpr, test_prevalence)
        oracle = np.array([best_f1(y[:, c], scores[:, c]) if present[c] else np.nan
                           for c in range(y.shape[1])])
        threshold_parts.append(observed - oracle)
        prevalence_parts.append(observed - f1_at_prevalence(tpr, fpr, runs.train_prevalence))
    mask = lambda parts: np.where(present, np.mean(parts, axis=0), np.nan)  # noqa: E731
    return mask(threshold_parts), mask(prevalence_parts)


def seed_averaged_metrics(runs: DomainRuns, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class F1/AUROC/AUPRC (B, C) under record weights ``counts``, averaged over seeds."""
    per_seed = [weighted_class_metrics(runs.y, s, p, counts) for s, p in zip(runs.scores, runs.predicted)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without positives
        return {m: np.nanmean([r[m] for r in per_seed], axis=0) for m in DEGRADATION_METRICS}


def compare_domain(
    intra: DomainRuns, lodo: DomainRuns, classes: Sequence[str], n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Degradation rows (less study, domain, label_set) of one domain: class x metric."""
    figures = {}
    for name, runs in (("intra", intra), ("lodo", lodo)):
        n = runs.y.shape[0]
        point = seed_averaged_metrics(runs, np.ones((1, n)))
        boot = seed_averaged_metrics(runs, bootstrap_counts(n, n_boot, seed))
        figures[name] = {m: (point[m][0], *percentile_interval(boot[m])) for m in DEGRADATION_METRICS}
    threshold_part, prevalence_part = f1_drop_parts(lodo)
    ranking_part = figures["lodo"]["auroc"][0] - figures["intra"]["auroc"][0]
    test_prevalence = lodo.y.mean(axis=0)
    rows = []
    for c, abbr in enumerate(classes):
        for metric in DEGRADATION_METRICS:
            (intra_v, intra_lo, intra_hi), (lodo_v, lodo_lo, lodo_hi) = (
                tuple(float(a[c]) for a in figures[p][metric]) for p in ("intra", "lodo"))
            is_f1 = metric == "f1"
            rows.append({
                "class": abbr, "metric": metric,
                "intra": intra_v, "intra_lo": intra_lo, "intra_hi": intra_hi,
                "lodo": lodo_v, "lodo_lo": lodo_lo, "lodo_hi": lodo_hi, "delta": lodo_v - intra_v,
                "train_prevalence": float(lodo.train_prevalence[c]),
                "test_prevalence": float(test_prevalence[c]),
                "ranking_part": float(ranking_part[c]) if is_f1 else np.nan,
                "threshold_part": float(threshold_part[c]) if is_f1 else np.nan,
                "prevalence_part": float(prevalence_part[c]) if is_f1 else np.nan,
            })
    return pd.DataFrame(rows)


def degradation_table(
    predictions: pd.DataFrame,
    class_metrics: pd.DataFrame,
    *,
    arm: str = "full",
    selection: str = "val",
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The degradation rows of a study from its stored test predictions and class metrics.

    Uses the ``arm`` runs with the given ``selection`` of both protocols; a domain
    tested under only one of them is skipped (logged). Intra-source folds of a domain
    are pooled, each record called at its own fold's thresholds.
    """
    runs = predictions[(predictions["arm"] == arm) & (predictions["selection"] == selection)]
    tested = class_metrics[(class_metrics["split"] == "test") & (class_metrics["label_set"] == "noisy")
                           & (class_metrics["arm"] == arm) & (class_metrics["selection"] == selection)]
    classes = prediction_classes(predictions)
    label_sets = ["noisy"] + (["clean"] if f"yclean_{classes[0]}" in runs.columns
                              and runs[f"yclean_{classes[0]}"].notna().all() else [])
    frames = []
    for study, study_runs in runs.groupby("study", sort=True):
        by_protocol = {p: r for p, r in study_runs.groupby("protocol")}
        domains = sorted(set(study_runs["domain"]))
        for domain in domains:
            sides = {p: by_protocol[p][by_protocol[p]["domain"] == domain]
                     for p in ("intra", "lodo") if p in by_protocol}
            if len(sides) < 2 or any(side.empty for side in sides.values()):
                log.info("degradation: %s has no intra and LODO test predictions both; skipped", domain)
                continue
            for label_set in label_sets:
                intra, lodo = (_domain_runs(sides[p], tested, classes, label_set) for p in ("intra", "lodo"))
                rows = compare_domain(intra, lodo, classes, n_boot=n_boot, seed=seed)
                frames.append(rows.assign(study=study, domain=domain, label_set=label_set))
    if not frames:
        return pd.DataFrame(columns=DEGRADATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[DEGRADATION_COLUMNS]


def degradation_rows(store: ResultsStore, study: str, *, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """The degradation table of a stored study: its `full` arm, validation-selected."""
    where = {"arm": "full", "selection": "val", "split": "test"}
    predictions = store.read(study, "predictions", filters={k: where[k] for k in ("arm", "selection")})
    class_metrics = store.read(study, "class_metrics", filters=where)
    if predictions.empty:
        return pd.DataFrame(columns=DEGRADATION_COLUMNS)
    return degradation_table(predictions, class_metrics, n_boot=n_boot, seed=seed)


def _domain_runs(rows: pd.DataFrame, tested: pd.DataFrame, classes: list[str], label_set: str) -> DomainRuns:
    """Stack one protocol's predictions on one domain by seed, over records every seed has.

    ``tested`` holds the class_metrics rows of the same runs: each record is called at
    its own run's thresholds, and the training prevalence is averaged over the runs.
    """
    per_run = tested.pivot_table(index=["fold_id", "seed"], columns="class",
                                 values=["threshold", "train_prevalence"], aggfunc="last")
    run_of_row = pd.MultiIndex.from_frame(rows[["fold_id", "seed"]])
    missing = run_of_row.unique().difference(per_run.index)
    if len(missing):
        raise ValueError(f"no test thresholds stored for runs {list(missing)}")
    scores = rows[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    called = scores >= per_run["threshold"].reindex(run_of_row)[classes].to_numpy(dtype=float)
    labels = rows[[f"{'yclean_' if label_set == 'clean' else 'y_'}{c}" for c in classes]].to_numpy(dtype=bool)

    record_ids = rows["record_id"].to_numpy(dtype=str)
    seed_of_row = rows["seed"].to_numpy()
    seeds = np.unique(seed_of_row)
    common = np.array(sorted(set.intersection(*(set(record_ids[seed_of_row == s]) for s in seeds))))
    # Row positions of the common records, in one order, for every seed.
    positions = [np.flatnonzero(seed_of_row == s)[np.argsort(record_ids[seed_of_row == s])] for s in seeds]
    positions = [p[np.isin(record_ids[p], common)] for p in positions]
    return DomainRuns(
        y=labels[positions[0]],
        scores=np.stack([scores[p] for p in positions]),
        predicted=np.stack([called[p] for p in positions]),
        train_prevalence=per_run["train_prevalence"].loc[run_of_row.unique(), classes]
        .mean(axis=0).to_numpy(dtype=float),
    )
