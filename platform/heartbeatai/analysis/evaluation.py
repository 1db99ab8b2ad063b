"""One tested run: its stored predictions -> class_metrics and fold_metrics rows.

The same function serves the fold runner when a run is tested and `study analyse` when
the study is re-analysed from the store, so both write the same rows. A run's inputs are
its predictions of the validation and test records (with labels), its deployed thresholds
and its training prevalence; everything else (point figures, intervals, their
reliability, whether a threshold fell back for lack of validation positives) is derived.

Intervals are those of intervals.py (per class) and macro_intervals.py (macro figures over
the fixed set of classes present in the test set; macro AUPRC over those with enough
positives, named in its row's `classes_used`); the challenge score and the challenge's
macro F-measure, defined on any record set, keep a record bootstrap. Where the true labels
are known (the synthetic benchmark's clean labels, columns yclean_<ABBR>) every figure is
reported against both label sets.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from heartbeatai.analysis.intervals import auroc_interval, average_precision_interval, f1_interval
from heartbeatai.analysis.macro_intervals import auprc_classes, macro_intervals
from heartbeatai.analysis.weighted_metrics import bootstrap_counts, challenge_scores, cinc_macro_fs, percentile_interval
from heartbeatai.metric_names import CLASS_METRICS, FOLD_METRICS
from heartbeatai.metrics import challenge_score, cinc_macro_f, evaluate_predictions, snomed_codes


@dataclass(frozen=True)
class RunPredictions:
    """A tested run's record-level predictions of one split, rows by record id."""

    record_ids: np.ndarray
    domains: np.ndarray
    y: np.ndarray  # (N, C) bool, the dataset's (possibly noisy) labels
    y_clean: np.ndarray | None  # (N, C) bool, the true labels where the data knows them
    scores: np.ndarray  # (N, C) probabilities


def prevalence_scores(train_prevalence: np.ndarray, n: int) -> np.ndarray:
    """The floor predictor: every record scored with the training prevalence of each class.

    Its AUROC is 0.5 and its AUPRC the test prevalence, so every model has a figure that
    knows nothing but the label frequencies to stand against. Thresholded at the
    prevalence itself (`prevalence_thresholds`) it calls every record positive, the best
    F1 a constant score can reach (2 pi / (1 + pi) at test prevalence pi); at 0.5 it would
    call none of the rarer classes and score F1 = 0, a floor no model has to climb.
    """
    prevalence = np.asarray(train_prevalence, dtype=float)
    return np.broadcast_to(prevalence, (n, prevalence.size)).copy()


def prevalence_thresholds(train_prevalence: np.ndarray) -> np.ndarray:
    """The floor's thresholds: each class's training prevalence, so `score >= threshold` calls all."""
    return np.asarray(train_prevalence, dtype=float).copy()


def run_seed(key: Mapping[str, Any], seed: int) -> list[int]:
    """A bootstrap seed per run: the analysis seed and a stable hash of the run key without its
    trial id and study. A fold tests one run per arm, seed and selection, so the rest of the key
    names it; Tune's trial ids are random, and with them a rerun of the same study
    (search.reproducible) would draw other intervals; and a study is named by its folder, so a
    copied or renamed one would too."""
    named = {k: str(v) for k, v in key.items() if k not in ("trial_id", "study")}
    return [seed, zlib.crc32(json.dumps(named, sort_keys=True).encode())]


def evaluate_run(
    test: RunPredictions,
    val: RunPredictions | None,
    thresholds: np.ndarray,
    train_prevalence: np.ndarray,
    classes: Sequence[str],
    key: Mapping[str, Any],
    *,
    min_positives: int,
    n_boot: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """fold_metrics and class_metrics rows of one tested run (split "test").

    `val` is the run's validation predictions: their prevalence is the prior its
    probabilities were calibrated under, and a class without a validation positive (or
    negative) had no F1 to tune its threshold on (`threshold_fallback`).
    """
    classes = list(classes)
    n, n_classes = test.scores.shape
    thresholds = np.asarray(thresholds, dtype=float)
    if test.y.shape != test.scores.shape or thresholds.shape != (n_classes,) or len(classes) != n_classes:
        raise ValueError(f"shapes disagree: y {test.y.shape}, scores {test.scores.shape}, "
                         f"thresholds {thresholds.shape}, {len(classes)} classes")
    if n == 0:
        raise ValueError("no records to evaluate")
    val_y = val.y if val is not None and len(val.y) else None
    val_prevalence = val_y.mean(axis=0) if val_y is not None else np.full(n_classes, np.nan)
    fallback = ~(val_y.any(axis=0) & (~val_y).any(axis=0)) if val_y is not None else np.zeros(n_classes, bool)
    label_sets = {"noisy": test.y}
    if test.y_clean is not None:
        label_sets["clean"] = test.y_clean
    called = test.scores >= thresholds
    counts = bootstrap_counts(n, n_boot, run_seed(key, seed))
    codes = snomed_codes(classes)
    fold_rows, class_rows = [], []
    for label_set, y in label_sets.items():
        base = {**key, "split": "test", "label_set": label_set}
        point = evaluate_predictions(y, test.scores, thresholds, classes)
        used = point.per_class["present"].to_numpy()
        averaged = {"macro_auprc": auprc_classes(y, used)}  # every other figure: the present classes
        names = {metric: json.dumps([c for c, u in zip(classes, averaged.get(metric, used)) if u])
                 for metric in FOLD_METRICS}
        macro = macro_intervals(y, test.scores, called, used)
        # The challenge's two figures, defined on any record set, keep a record bootstrap.
        intervals = {name: (m.value, m.low, m.high) for name, m in macro.items()}
        for name, point_of, replicates_of in (("challenge_score", challenge_score, challenge_scores),
                                              ("cinc_macro_f", cinc_macro_f, cinc_macro_fs)):
            low, high = percentile_interval(replicates_of(y, called, codes, counts))
            intervals[name] = (point_of(y, called, codes), low, high)
        for metric in FOLD_METRICS:
            if metric in averaged and not averaged[metric].any():
                continue  # no class with enough positives: no macro AUPRC row (value is required)
            value, low, high = intervals[metric]
            fold_rows.append({**base, "metric": metric, "value": float(value), "ci_low": float(low),
                              "ci_high": float(high),
                              "classes_used": names[metric]})
        for c, abbr in enumerate(classes):
            class_rows.append({**base, **_class_row(y[:, c], test.scores[:, c], called[:, c], point.per_class.iloc[c],
                                                   min_positives),
                               "class": abbr, "train_prevalence": float(train_prevalence[c]),
                               "val_prevalence": float(val_prevalence[c]), "threshold": float(thresholds[c]),
                               "threshold_fallback": bool(fallback[c])})
    return {"fold_metrics": pd.DataFrame(fold_rows), "class_metrics": pd.DataFrame(class_rows)}


def _class_row(y: np.ndarray, s: np.ndarray, called: np.ndarray, point: pd.Series, min_positives: int) -> dict:
    positives = int(y.sum())
    present = bool(point["present"])
    row = {"positives": positives, "test_prevalence": positives / len(y), "present": present,
           "interval_reliable": present and positives >= min_positives, "brier": float(point["brier"])}
    if present:
        tp, fp, fn = int((y & called).sum()), int((~y & called).sum()), int((y & ~called).sum())
        found = {"auroc": auroc_interval(y, s), "f1": f1_interval(tp, fp, fn),
                 "auprc": average_precision_interval(float(average_precision_score(y, s)), positives)}
    else:
        found = {}
    for metric in CLASS_METRICS:
        interval = found.get(metric)
        row[metric] = float(point[metric])
        row[f"{metric}_lo"] = float(interval.low) if interval else np.nan
        row[f"{metric}_hi"] = float(interval.high) if interval else np.nan
    return row


def prediction_rows(
    record_ids: Sequence[str],
    domains: Sequence[str],
    scores: np.ndarray,
    y_true: np.ndarray,
    classes: Sequence[str],
    key: Mapping[str, Any],
    split: str,
    y_clean: np.ndarray | None = None,
) -> pd.DataFrame:
    """The wide predictions table: key, split, record_id, domain, p_<ABBR>, y_<ABBR>[, yclean_<ABBR>]."""
    columns: dict[str, Any] = {name: [value] * len(record_ids) for name, value in key.items()}
    columns["split"] = [split] * len(record_ids)
    columns["record_id"] = [str(r) for r in record_ids]
    columns["domain"] = [str(d) for d in domains]
    for c, abbr in enumerate(classes):
        columns[f"p_{abbr}"] = np.asarray(scores[:, c], dtype=float)
    for c, abbr in enumerate(classes):
        columns[f"y_{abbr}"] = np.asarray(y_true[:, c], dtype=bool)
    if y_clean is not None:
        for c, abbr in enumerate(classes):
            columns[f"yclean_{abbr}"] = np.asarray(y_clean[:, c], dtype=bool)
    return pd.DataFrame(columns)


def prediction_classes(predictions: pd.DataFrame) -> list[str]:
    """Class abbreviations of a predictions frame, in column order."""
    return [c[2:] for c in predictions.columns if c.startswith("p_")]


def run_predictions(rows: pd.DataFrame, classes: Sequence[str]) -> RunPredictions:
    """One run's prediction rows of one split as arrays, ordered by record id."""
    rows = rows.sort_values("record_id", kind="stable")
    clean_columns = [f"yclean_{c}" for c in classes]
    has_clean = all(c in rows.columns for c in clean_columns) and not rows[clean_columns].isna().any().any()
    return RunPredictions(
        record_ids=rows["record_id"].to_numpy(dtype=str),
        domains=rows["domain"].to_numpy(dtype=str),
        y=rows[[f"y_{c}" for c in classes]].to_numpy(dtype=bool),
        y_clean=rows[clean_columns].to_numpy(dtype=bool) if has_clean else None,
        scores=rows[[f"p_{c}" for c in classes]].to_numpy(dtype=float),
    )
