"""`heartbeatai study analyse`: every study-level table recomputed from the results store alone.

The stored runs (their predictions of the validation and test records, their deployed
thresholds and training prevalences, the trials' configurations) are all it reads: no
torch, no Ray, no prepared dataset. It rewrites the test intervals of every tested run
(class_metrics, fold_metrics), ablation_tests, degradation, rarity_contrast, algorithm_parts and
the consensus row of best_configs, each from the same seed, so a rerun writes identical tables and a researcher
can re-analyse with another bootstrap size or ROPE without retraining. `study run` ends
with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from heartbeatai.analysis.ablation_tests import ComparisonSettings, ablation_test_rows
from heartbeatai.analysis.consensus import consensus_rows
from heartbeatai.analysis.degradation import algorithm_part_rows, degradation_rows, degradation_summary
from heartbeatai.analysis.rarity_contrast import contrast_summary, rarity_contrast_rows
from heartbeatai.analysis.evaluation import evaluate_run, prediction_classes, run_predictions
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.reader import FOREIGN
from heartbeatai.results.schema import CONSENSUS_FOLD, RUN_KEY, SCHEMA_VERSION, TABLES

Progress = Callable[[str], None]
# The tables this stage owns, in the order it writes them.
ANALYSIS_TABLES = ("class_metrics", "fold_metrics", "ablation_tests", "class_tests", "degradation",
                   "rarity_contrast", "algorithm_parts", "best_configs")


class AnalysisError(RuntimeError):
    """The store cannot be analysed (an older schema, or nothing tested yet): one line."""


@dataclass(frozen=True)
class AnalysisSettings:
    n_boot: int
    seed: int
    rope: float
    decision_probability: float
    min_positives: int
    primary_metric: str = "macro_auroc"  # the selection metric's test-set counterpart: the confirmatory family


def analyse_study(study_dir: str | Path, settings: AnalysisSettings, progress: Progress = print) -> dict[str, int]:
    """Recompute the study-level tables of `study_dir`; returns rows written per table."""
    study_dir = Path(study_dir).resolve()
    store, study = ResultsStore(str(study_dir.parent)), study_dir.name
    version = store.schema_version(study)
    if version is not None and version != SCHEMA_VERSION:
        raise AnalysisError(f"{study_dir} holds results schema {version}; this version analyses schema "
                            f"{SCHEMA_VERSION} (validation predictions are needed): rerun the study")
    foreign = [f"results/{table}/{problem}" for table in TABLES
               for problem in store.status(study, table).corrupt if FOREIGN in problem]
    if foreign:  # a copy is read as itself; rows of two studies in one folder are refused
        raise AnalysisError(f"{study_dir} mixes another study's rows into its own in {len(foreign)} part(s), "
                            f"first {foreign[0]}: move them out of the folder (study resume moves them to damaged/ "
                            f"in a folder that keeps its study's name; a copied or renamed one needs it done by hand)")
    predictions = store.read(study, "predictions")
    if predictions.empty:
        raise AnalysisError(f"{study_dir} has no tested runs yet: nothing to analyse")
    writer = ResultsWriter(study_dir)
    written: dict[str, int] = {}
    class_metrics = store.read(study, "class_metrics")

    progress(f"analysis: test intervals of {predictions.groupby(list(RUN_KEY)).ngroups} tested run(s)")
    evaluated = _evaluate_runs(predictions, class_metrics, settings)
    for table in ("class_metrics", "fold_metrics"):
        # Replaced, not appended: a row this analysis no longer writes (macro AUPRC of a run
        # without a class of 10 test positives) must not survive from an earlier analysis.
        writer.replace(table, evaluated[table], where={"study": study, "split": "test"})
        written[table] = len(evaluated[table])
    class_metrics = evaluated["class_metrics"]

    trials = store.read(study, "trials")
    class_rows: list[pd.DataFrame] = []
    tests = ablation_test_rows(predictions, class_metrics, study,
                               ComparisonSettings(settings.n_boot, settings.seed, settings.rope,
                                                  settings.decision_probability, settings.primary_metric,
                                                  settings.min_positives),
                               progress, trials=trials, class_rows=class_rows)
    writer.replace("ablation_tests", tests, where={"study": study})
    written["ablation_tests"] = len(tests)
    progress(f"ablation tests: {len(tests)} rows")
    class_tests = class_rows[0] if class_rows else pd.DataFrame()
    writer.replace("class_tests", class_tests, where={"study": study})
    written["class_tests"] = len(class_tests)

    cells: list = []
    degradation = degradation_rows(predictions, class_metrics, trials, study,
                                   n_boot=settings.n_boot, seed=settings.seed, min_positives=settings.min_positives,
                                   progress=progress, cells=cells)
    writer.replace("degradation", degradation, where={"study": study})
    written["degradation"] = len(degradation)
    progress(degradation_summary(degradation))
    contrast = rarity_contrast_rows(cells, study)
    writer.replace("rarity_contrast", contrast, where={"study": study})
    written["rarity_contrast"] = len(contrast)
    progress(contrast_summary(contrast))
    parts = algorithm_part_rows(predictions, class_metrics, trials, study, n_boot=settings.n_boot,
                                seed=settings.seed, min_positives=settings.min_positives)
    writer.replace("algorithm_parts", parts, where={"study": study})
    written["algorithm_parts"] = len(parts)
    if len(parts):
        progress(f"algorithm parts: {parts['arm'].nunique()} algorithm(s) against ERM x "
                 f"{parts['domain'].nunique()} domain(s)")

    consensus = consensus_rows(store, study)
    # Replaced, not appended: a consensus written before rows named their arm would stay beside it.
    writer.replace("best_configs", consensus, where={"study": study, "fold_id": CONSENSUS_FOLD})
    written["best_configs"] = len(consensus)
    for table in ANALYSIS_TABLES:
        if written.get(table):
            writer.compact(table)
    return written


def _evaluate_runs(predictions: pd.DataFrame, class_metrics: pd.DataFrame, settings: AnalysisSettings) -> dict:
    """class_metrics and fold_metrics rows of every tested run, from its stored inputs."""
    classes = prediction_classes(predictions)
    inputs = class_metrics[class_metrics["label_set"] == "noisy"]
    frames: dict[str, list[pd.DataFrame]] = {"class_metrics": [], "fold_metrics": []}
    for key_values, run in predictions.groupby(list(RUN_KEY), sort=True):
        key = dict(zip(RUN_KEY, key_values))
        own = inputs
        for column, value in key.items():
            own = own[own[column] == value]
        own = own.set_index("class").reindex(classes)
        if own["threshold"].isna().any():
            continue  # a run whose inputs were never stored cannot be re-evaluated
        by_split = {split: run_predictions(rows, classes) for split, rows in run.groupby("split")}
        if "test" not in by_split:
            continue
        tables = evaluate_run(by_split["test"], by_split.get("val"), own["threshold"].to_numpy(dtype=float),
                              own["train_prevalence"].to_numpy(dtype=float), classes, key,
                              min_positives=settings.min_positives, n_boot=settings.n_boot, seed=settings.seed)
        for table, frame in tables.items():
            frames[table].append(frame)
    return {table: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame() for table, parts in frames.items()}
