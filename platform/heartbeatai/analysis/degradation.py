"""The degradation table: each class's F1 drop on each held-out domain, split (docs/analysis.md).

For held-out domain d, the LODO model (arm `full`, fold lodo:<d>) and the reference are
scored on the same records of d. The reference is the matched-size `reference:<d>:<i>` folds'
models, pooled (each record scored by the part's model that tested it), where the study ran
that protocol, else the intra-source folds of d, pooled: each
record scored by the intra fold model that tested it. Only the seeds both sides ran are
paired (seed s with seed s), and only the records both sides scored. Every model's
probabilities are un-smoothed with its own label smoothing, Platt-scaled on its own
validation predictions and corrected to the known test prevalence (prior_shift.py);
degradation_split.py does the three evaluations and the parts. Beside the truth, the
label-free EM and BBSE estimates of the prevalence, each flagged where it is far from it,
and each model's calibration error on the shared test records (where Platt was not fitted).
Intervals are percentile intervals of a paired bootstrap over the shared records (the same
replicates for both sides and every seed), with the trained models fixed: conditional on
these trained models (`conditional`), seed-to-seed variation is not in them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from heartbeatai.analysis.degradation_split import ScoredRecords, split_parts, three_evaluations
from heartbeatai.analysis.evaluation import prediction_classes
from heartbeatai.analysis.prior_shift import (
    call_rates, expected_calibration_error, far_from_truth, fit_platt, unsmooth,
)
from heartbeatai.analysis.rarity_contrast import ContrastCell
from heartbeatai.analysis.weighted_metrics import bootstrap_counts, percentile_interval
from heartbeatai.arms import FULL, is_algorithm
from heartbeatai.metrics import weighted_class_metrics
from heartbeatai.protocols import INTRA, LODO, REFERENCE, parse_fold_id
from heartbeatai.results.schema import DEGRADATION_PARTS, DEGRADATION_TOTAL, PREVALENCE_ESTIMATORS, REFERENCE_KINDS


@dataclass(frozen=True)
class _Model:
    """One trained model's view: calibrated probabilities, deployed calls and their cut, per record."""

    record_ids: np.ndarray
    scored: ScoredRecords
    train_prevalence: np.ndarray


def degradation_rows(predictions: pd.DataFrame, class_metrics: pd.DataFrame, trials: pd.DataFrame, study: str,
                     *, n_boot: int, seed: int, min_positives: int,
                     progress: Callable[[str], None] = lambda _: None,
                     cells: list[ContrastCell] | None = None) -> pd.DataFrame:
    """Every row of the degradation table for `study` (empty without LODO and a reference).
    `cells`, when given, receives each row's bootstrap replicates for rarity_contrast.py."""
    arm_runs = predictions[(predictions["arm"] == FULL) & (predictions["selection"] == "val")]
    metrics = class_metrics[(class_metrics["label_set"] == "noisy") & (class_metrics["arm"] == FULL)
                            & (class_metrics["selection"] == "val")]
    smoothing = _label_smoothing(trials)
    rows = []
    lodo_folds = sorted(f for f in arm_runs.loc[arm_runs["protocol"] == LODO, "fold_id"].unique())
    for lodo_fold in lodo_folds:
        domain = parse_fold_id(lodo_fold).domain
        reference_kind, reference_runs = _reference_runs(arm_runs, domain)
        if reference_runs.empty:
            continue
        lodo_runs = arm_runs[arm_runs["fold_id"] == lodo_fold]
        progress(f"degradation: {domain}, LODO against the {REFERENCE_KINDS[reference_kind]}")
        rows += _domain_rows(study, domain, reference_kind, lodo_runs, reference_runs, metrics, smoothing,
                             n_boot=n_boot, seed=seed, min_positives=min_positives,
                             cells=cells if cells is not None else [])
    return pd.DataFrame(rows)


def algorithm_part_rows(predictions: pd.DataFrame, class_metrics: pd.DataFrame, trials: pd.DataFrame, study: str,
                        *, n_boot: int, seed: int, min_positives: int) -> pd.DataFrame:
    """The algorithm_parts table: per algorithm arm and LODO fold, the split of its model against
    `full`'s (ERM's) on the same test records, seed s with seed s. With one reference R for both,
    part(A vs R) - part(ERM vs R) is the split of A against ERM itself (the R terms cancel in
    each part), so no reference protocol is needed: which part of the drop the algorithm
    reduces, read from LODO alone."""
    runs = predictions[(predictions["protocol"] == LODO) & (predictions["selection"] == "val")]
    metrics = class_metrics[(class_metrics["label_set"] == "noisy") & (class_metrics["selection"] == "val")]
    smoothing = _label_smoothing(trials)
    rows = []
    for arm in sorted(a for a in runs["arm"].unique() if is_algorithm(a)):
        for fold in sorted(runs.loc[runs["arm"] == arm, "fold_id"].unique()):
            erm = runs[(runs["arm"] == FULL) & (runs["fold_id"] == fold)]
            if erm.empty:
                continue
            domain_rows = _domain_rows(study, parse_fold_id(fold).domain, LODO,
                                       runs[(runs["arm"] == arm) & (runs["fold_id"] == fold)], erm, metrics, smoothing,
                                       n_boot=n_boot, seed=seed, min_positives=min_positives, cells=[])
            rows += [{"study": study, "arm": arm, **{k: row[k] for k in _ALGORITHM_PART_KEPT},
                      "train_prevalence": row["train_prevalence_lodo"], "f1_erm": row["f1_reference"],
                      "f1_algorithm": row["f1_lodo"]} for row in domain_rows]
    return pd.DataFrame(rows)


_ALGORITHM_PART_KEPT = ("domain", "class", "label_set", "n_records", "n_positives", "n_seeds", "interval_reliable",
                        "conditional", *(f"{part}{end}" for part in (DEGRADATION_TOTAL, *DEGRADATION_PARTS, "auroc_change")
                                         for end in ("", "_lo", "_hi")))


def _reference_runs(runs: pd.DataFrame, domain: str) -> tuple[str, pd.DataFrame]:
    held_out = runs["fold_id"].map({f: parse_fold_id(f).domain for f in runs["fold_id"].unique()})
    matched = runs[(runs["protocol"] == REFERENCE) & (held_out == domain)]
    if not matched.empty:
        return REFERENCE, matched
    return INTRA, runs[(runs["protocol"] == INTRA) & (held_out == domain)]


def _label_smoothing(trials: pd.DataFrame) -> dict[str, float]:
    column = "cfg.label_smoothing"
    if trials.empty or column not in trials:
        return {}
    latest = trials.drop_duplicates("trial_id", keep="last")
    return {str(t): float(e) for t, e in zip(latest["trial_id"], latest[column]) if pd.notna(e)}


def _domain_rows(study, domain, reference_kind, lodo_runs, reference_runs, metrics, smoothing, *,
                 n_boot, seed, min_positives, cells: list[ContrastCell]) -> list[dict]:
    classes = prediction_classes(lodo_runs)
    seeds = sorted(set(lodo_runs["seed"]) & set(reference_runs["seed"]))
    lodo_models = {s: [_model(run, metrics, smoothing, classes)
                       for _, run in lodo_runs[lodo_runs["seed"] == s].groupby("trial_id", sort=True)] for s in seeds}
    reference_models = {s: [_model(run, metrics, smoothing, classes)
                            for _, run in reference_runs[reference_runs["seed"] == s].groupby(["fold_id", "trial_id"])]
                        for s in seeds}
    test = lodo_runs[lodo_runs["split"] == "test"]
    shared = set(test["record_id"])
    for s in seeds:
        shared &= set(np.concatenate([m.record_ids for m in reference_models[s]]))
        shared &= set(np.concatenate([m.record_ids for m in lodo_models[s]]))
    shared_ids = np.array(sorted(shared))
    if len(shared_ids) == 0:
        return []
    labels = test.drop_duplicates("record_id").set_index("record_id").loc[shared_ids]
    label_sets = {"noisy": labels[[f"y_{c}" for c in classes]].to_numpy(dtype=bool)}
    clean = [f"yclean_{c}" for c in classes]
    if all(c in labels for c in clean) and not labels[clean].isna().any().any():
        label_sets["clean"] = labels[clean].to_numpy(dtype=bool)
    n = len(shared_ids)
    weights = np.vstack([np.ones(n), bootstrap_counts(n, n_boot, [seed, zlib.crc32(domain.encode())])])
    rows = []
    for label_set, y in label_sets.items():
        present = y.any(axis=0) & (~y).any(axis=0)
        if not present.any():
            continue
        y_used = y[:, present]
        summed: dict[str, np.ndarray] = {}
        for s in seeds:  # seed s of LODO pairs with seed s of the reference; figures averaged over seeds
            lodo = _pooled(lodo_models[s], shared_ids, present)
            reference = _pooled(reference_models[s], shared_ids, present)
            lodo_eval = three_evaluations(y_used, lodo.scored, weights)
            reference_eval = three_evaluations(y_used, reference.scored, weights)
            figures = {**split_parts(lodo_eval, reference_eval),
                       "f1_lodo": lodo_eval["dep"], "f1_reference": reference_eval["dep"],
                       "auroc_lodo": _auroc(y_used, lodo.scored.calibrated, weights),
                       "auroc_reference": _auroc(y_used, reference.scored.calibrated, weights),
                       "em_prevalence_lodo": lodo_eval["em_prevalence"],
                       "em_prevalence_reference": reference_eval["em_prevalence"],
                       "bbse_prevalence_lodo": lodo_eval["bbse_prevalence"],
                       "bbse_prevalence_reference": reference_eval["bbse_prevalence"],
                       # Measured on the held-out domain's records, not on the validation records
                       # Platt was fitted on (small there by construction).
                       "test_calibration_error_lodo": expected_calibration_error(lodo.scored.calibrated, y_used)[None],
                       "test_calibration_error_reference":
                           expected_calibration_error(reference.scored.calibrated, y_used)[None],
                       "train_prevalence_lodo": lodo.train_prevalence[None, :],
                       "train_prevalence_reference": reference.train_prevalence[None, :]}
            for name, value in figures.items():
                summed[name] = summed.get(name, 0.0) + value / len(seeds)
        summed["auroc_change"] = summed["auroc_lodo"] - summed["auroc_reference"]
        truth = y_used.mean(axis=0)
        for estimator in PREVALENCE_ESTIMATORS:
            for side in ("lodo", "reference"):
                summed[f"{estimator}_far_{side}"] = far_from_truth(summed[f"{estimator}_prevalence_{side}"][0], truth)
        positives = y_used.sum(axis=0)
        for j, c in enumerate(np.flatnonzero(present)):
            row = {"study": study, "domain": domain, "class": classes[c], "label_set": label_set,
                   "reference_kind": reference_kind, "n_records": n, "n_positives": int(positives[j]),
                   "n_seeds": len(seeds), "interval_reliable": bool(positives[j] >= min_positives),
                   "conditional": True, "test_prevalence": float(positives[j] / n)}
            for name in (DEGRADATION_TOTAL, *DEGRADATION_PARTS, "auroc_change"):
                low, high = percentile_interval(summed[name][1:, j])
                row.update({name: float(summed[name][0, j]), f"{name}_lo": float(low), f"{name}_hi": float(high)})
            for name in ("f1_lodo", "f1_reference", "auroc_lodo", "auroc_reference",
                         *(f"{e}_prevalence_{side}" for e in PREVALENCE_ESTIMATORS for side in ("lodo", "reference")),
                         "test_calibration_error_lodo", "test_calibration_error_reference",
                         "train_prevalence_lodo", "train_prevalence_reference"):
                row[name] = float(summed[name][0, j])
            row.update({f"{e}_far_{side}": bool(summed[f"{e}_far_{side}"][j])
                        for e in PREVALENCE_ESTIMATORS for side in ("lodo", "reference")})
            rows.append(row)
            cells.append(ContrastCell(domain, classes[c], label_set, reference_kind, int(positives[j]),
                                      float(summed["train_prevalence_lodo"][0, j]),
                                      float(summed["f1_lodo"][0, j]), float(summed["f1_reference"][0, j])))
    return rows


def _model(run: pd.DataFrame, metrics: pd.DataFrame, smoothing: dict[str, float], classes: list[str]) -> _Model:
    """Calibrate one run on its validation predictions and express its deployed cut in calibrated units."""
    trial_id = str(run["trial_id"].iloc[0])
    epsilon = smoothing.get(trial_id, 0.0)
    own = metrics[metrics["trial_id"] == trial_id].set_index("class").reindex(classes)
    threshold = own["threshold"].to_numpy(dtype=float)
    val = run[run["split"] == "val"].sort_values("record_id")
    test = run[run["split"] == "test"].sort_values("record_id")
    p_columns = [f"p_{c}" for c in classes]
    val_q = unsmooth(val[p_columns].to_numpy(dtype=float), epsilon)
    val_y = val[[f"y_{c}" for c in classes]].to_numpy(dtype=bool)
    platt = fit_platt(val_q, val_y) if len(val) else fit_platt(np.zeros((0, len(classes))), np.zeros((0, len(classes)), bool))
    raw = test[p_columns].to_numpy(dtype=float)
    calibrated = platt(unsmooth(raw, epsilon))
    cut = platt(unsmooth(np.where(np.isfinite(threshold), threshold, 1.0)[None, :], epsilon))[0]
    cut = np.where(np.isfinite(threshold), cut, np.inf)
    source_prior = val_y.mean(axis=0) if len(val) else own["train_prevalence"].to_numpy(dtype=float)
    # The deployed calls' error rates on the model's own validation records, for BBSE.
    tpr, fpr = call_rates(val[p_columns].to_numpy(dtype=float) >= threshold, val_y)
    n = len(test)
    per_record = lambda values: np.broadcast_to(values, (n, len(classes))).copy()  # noqa: E731
    scored = ScoredRecords(calibrated, per_record(source_prior), raw >= threshold, per_record(cut),
                           per_record(tpr), per_record(fpr))
    return _Model(test["record_id"].to_numpy(dtype=str), scored, own["train_prevalence"].to_numpy(dtype=float))


def _pooled(models: list[_Model], record_ids: np.ndarray, present: np.ndarray) -> _Model:
    """One record-level model over `record_ids`: each record from the (first) model that scored it."""
    parts = {name: np.full((len(record_ids), int(present.sum())), np.nan)
             for name in ("calibrated", "source_prior", "cut", "val_tpr", "val_fpr")}
    calls = np.zeros((len(record_ids), int(present.sum())), bool)
    position = {r: i for i, r in enumerate(record_ids)}
    filled = np.zeros(len(record_ids), bool)
    for model in models:
        rows = np.array([position.get(r, -1) for r in model.record_ids])
        keep = (rows >= 0) & ~filled[np.maximum(rows, 0)]
        target = rows[keep]
        for name in parts:
            parts[name][target] = getattr(model.scored, name)[keep][:, present]
        calls[target] = model.scored.dep_calls[keep][:, present]
        filled[target] = True
    weight = np.array([np.isin(m.record_ids, record_ids).sum() for m in models], dtype=float)
    weight = weight / weight.sum()
    mean = lambda name: np.nansum([w * getattr(m, name)[present] for w, m in zip(weight, models)], axis=0)  # noqa: E731
    scored = ScoredRecords(parts["calibrated"], parts["source_prior"], calls, parts["cut"],
                           parts["val_tpr"], parts["val_fpr"])
    return _Model(record_ids, scored, mean("train_prevalence"))


def _auroc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weighted_class_metrics(y, scores, np.zeros_like(y), weights)["auroc"]


def degradation_summary(rows: pd.DataFrame) -> str:
    """One line for the console: the classes split and the reference used."""
    if rows.empty:
        return "degradation: no LODO fold with a reference on the same records"
    kinds = json.dumps(sorted(set(rows["reference_kind"])))
    return f"degradation: {rows['class'].nunique()} class(es) x {rows['domain'].nunique()} domain(s), reference {kinds}"
