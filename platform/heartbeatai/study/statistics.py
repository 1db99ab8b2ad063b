"""Paired ablation statistics: every arm against `full`, over the same folds and seeds.

Two views of one question, "does removing this component change the test metric?":

- across runs: the Wilcoxon signed-rank test over the fold x seed pairs (each arm is
  retrained for every seed on the same folds, so the pairs are natural), with the
  matched-pairs rank-biserial correlation as its effect size (Kerby 2014,
  "The simple difference formula");
- within the test data: a paired bootstrap over records. One replicate resamples each
  fold's test records once and scores both arms, every seed, on the same draw, so the
  interval of the mean difference reflects record sampling and not arm noise alone.

Seeds of one fold share its test records, so fold x seed pairs are not fully
independent; the record-level bootstrap is the check that does not assume they are.
The Wilcoxon p-values of one protocol and metric form a family, Holm-corrected across
arms (Holm 1979, step-down; scipy ships only Benjamini-Hochberg). Notes about tests that
cannot run (fewer than 6 non-zero differences, all differences zero) are logged and kept
in ``frame.attrs["notes"]``: the store's ablation_tests table has no text column.
"""

from __future__ import annotations

import logging
import zlib
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata, wilcoxon

from heartbeatai.study.evaluation import (
    bootstrap_counts,
    macro_metrics,
    percentile_interval,
    prediction_classes,
    run_arrays,
    weighted_class_metrics,
)

log = logging.getLogger(__name__)

REFERENCE_ARM = "full"
# With n < 6 non-zero differences the two-sided exact Wilcoxon p-value cannot go below
# 2 / 2**5 = 0.0625: the test can never reject at 5%, so it is reported as not run.
MIN_WILCOXON_PAIRS = 6
ABLATION_TESTS_COLUMNS = [
    "study", "protocol", "arm", "metric", "n_pairs", "mean_full", "mean_arm", "mean_diff",
    "diff_lo", "diff_hi", "effect_size", "wilcoxon_p", "bootstrap_p", "p_holm",
]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979); nan entries stay nan and do not count.

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def rank_biserial(differences: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014): (W+ - W-) / (W+ + W-).

    Zero differences are dropped, as in Wilcoxon's own zero handling; +1 when every
    non-zero difference is positive (the arm beats full), -1 when every one is negative.
    """
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def wilcoxon_p(differences: Sequence[float]) -> tuple[float, str | None]:
    """Two-sided Wilcoxon signed-rank p-value, or nan with the reason it was not run."""
    d = np.asarray(differences, dtype=float)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return float("nan"), "all differences are zero"
    if nonzero < MIN_WILCOXON_PAIRS:
        return float("nan"), (
            f"{nonzero} non-zero paired differences (< {MIN_WILCOXON_PAIRS}): "
            "the signed-rank test cannot reach p < 0.05")
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue), None


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a mean difference of zero.

    Twice the share of replicates on the far side of zero, with the +1 correction of
    Davison & Hinkley (1997) so that a finite bootstrap never reports p = 0.
    """
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if r.size == 0:
        return float("nan")
    tail = min(np.count_nonzero(r <= 0), np.count_nonzero(r >= 0))
    return float(min(1.0, 2 * (tail + 1) / (r.size + 1)))


class PairedReplicates:
    """Bootstrap replicates of each run's test metrics, drawn so that runs pair up.

    One replicate resamples a fold's test records once (multinomial counts); every arm and
    seed tested on that fold is scored on the same draw, so differences between arms are
    paired at the record level. Replicates are computed once per run and reused across
    the arms compared with it.
    """

    def __init__(self, predictions: pd.DataFrame, class_metrics: pd.DataFrame, n_boot: int, seed: int):
        self._predictions = predictions
        self._class_metrics = class_metrics
        self._classes = prediction_classes(predictions)
        self._n_boot = n_boot
        self._seed = seed
        self._draws: dict[tuple[str, str], np.ndarray] = {}
        self._runs: dict[tuple, tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def run(self, run: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(record ids, metric -> (n_boot,) replicates) of one run (a full store key less trial_id)."""
        key = tuple(sorted(run.items()))
        if key not in self._runs:
            rows = _select(self._predictions, run)
            if rows.empty:
                raise ValueError(f"{_describe(run)}: no predictions stored")
            ids, y, scores = run_arrays(rows, self._classes)
            thresholds = _thresholds(self._class_metrics, run, self._classes)
            fold = (run["protocol"], run["fold_id"])
            if fold not in self._draws:
                # Seeded by the fold's name: a fold's draw does not depend on which arms ran.
                fold_seed = [self._seed, zlib.crc32(f"{fold[0]}/{fold[1]}".encode())]
                self._draws[fold] = bootstrap_counts(len(ids), self._n_boot, fold_seed)
            counts = self._draws[fold]
            if counts.shape[1] != len(ids):
                raise ValueError(f"{_describe(run)}: tested on other records than the fold's other runs")
            used = y.any(axis=0) & ~y.all(axis=0)
            predicted = scores >= thresholds
            per_class = weighted_class_metrics(y, scores, predicted, counts)
            self._runs[key] = (ids, macro_metrics(per_class, y, predicted, self._classes, counts, used))
        return self._runs[key]

    def mean_difference(self, reference: dict, arm: str, pairs: Sequence[tuple[str, int]], metric: str) -> np.ndarray:
        """Replicates of the mean over fold x seed pairs of (arm - reference)."""
        differences = []
        for fold_id, seed in pairs:
            base = {**reference, "fold_id": fold_id, "seed": seed}
            ref_ids, ref_values = self.run(base)
            arm_ids, arm_values = self.run({**base, "arm": arm})
            if not np.array_equal(ref_ids, arm_ids):
                raise ValueError(
                    f"{_describe({**base, 'arm': arm})}: tested on other records than "
                    f"arm {reference['arm']!r}; a paired bootstrap needs the same test set")
            differences.append(arm_values[metric] - ref_values[metric])
        return np.mean(differences, axis=0)


def ablation_tests(
    fold_metrics: pd.DataFrame,
    predictions: pd.DataFrame,
    class_metrics: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("macro_auroc", "macro_f1", "macro_auprc", "challenge_score"),
    reference: str = REFERENCE_ARM,
    selection: str = "val",
    n_boot: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """The ablation_tests rows of a study: each arm against ``reference``, per protocol and metric.

    Reads the study's test-split, noisy-label rows of fold_metrics (means and Wilcoxon),
    predictions and class_metrics (thresholds, for the paired bootstrap), for runs
    with the given ``selection``. Arms without a single pair with the reference are
    skipped. Notes on tests that could not run are in ``result.attrs["notes"]``.
    """
    tested = fold_metrics[(fold_metrics["split"] == "test") & (fold_metrics["label_set"] == "noisy")
                          & (fold_metrics["selection"] == selection)]
    replicates = PairedReplicates(predictions, class_metrics, n_boot, seed)
    rows, notes = [], []
    for (study, protocol), runs in tested.groupby(["study", "protocol"], sort=True):
        values = runs.pivot_table(index=["fold_id", "seed"], columns=["metric", "arm"],
                                  values="value", aggfunc="last")
        reference_run = {"study": study, "protocol": protocol, "selection": selection, "arm": reference}
        family = []
        for arm in sorted(set(runs["arm"]) - {reference}):
            for metric in metrics:
                if (metric, reference) not in values.columns or (metric, arm) not in values.columns:
                    continue
                pairs = values[[(metric, reference), (metric, arm)]].dropna()
                if pairs.empty:
                    continue
                full, other = pairs.iloc[:, 0].to_numpy(), pairs.iloc[:, 1].to_numpy()
                diffs = other - full
                p_w, note = wilcoxon_p(diffs)
                if note:
                    notes.append(f"{protocol} {arm} vs {reference}, {metric}: {note}")
                boot = replicates.mean_difference(reference_run, arm, list(pairs.index), metric)
                low, high = percentile_interval(boot)
                family.append({
                    "study": study, "protocol": protocol, "arm": arm, "metric": metric,
                    "n_pairs": len(pairs), "mean_full": float(full.mean()),
                    "mean_arm": float(other.mean()), "mean_diff": float(diffs.mean()),
                    "diff_lo": float(low), "diff_hi": float(high),
                    "effect_size": rank_biserial(diffs), "wilcoxon_p": p_w,
                    "bootstrap_p": bootstrap_p(boot),
                })
        for metric in metrics:
            members = [r for r in family if r["metric"] == metric]
            for row, adjusted in zip(members, holm([r["wilcoxon_p"] for r in members])):
                row["p_holm"] = float(adjusted)
        rows.extend(family)
    for note in notes:
        log.warning("ablation statistics: %s", note)
    result = pd.DataFrame(rows, columns=ABLATION_TESTS_COLUMNS)
    result.attrs["notes"] = notes
    return result


def _describe(run: dict) -> str:
    return f"{run['protocol']} {run['fold_id']} arm {run['arm']!r} seed {run['seed']}"


def _select(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def _thresholds(class_metrics: pd.DataFrame, run: dict, classes: Sequence[str]) -> np.ndarray:
    rows = _select(class_metrics, {**run, "split": "test", "label_set": "noisy"})
    by_class = rows.drop_duplicates("class", keep="last").set_index("class")["threshold"]
    missing = [c for c in classes if c not in by_class.index]
    if missing:
        raise ValueError(f"{_describe(run)}: no test threshold stored for {missing}")
    return by_class.loc[list(classes)].to_numpy(dtype=float)
