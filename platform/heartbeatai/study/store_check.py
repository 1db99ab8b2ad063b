"""A damaged results store is named, and repaired by rerunning exactly the stages that lost rows.

Every part of every table is read in full and checked against the schema (the reader skips
and reports a part that is not readable Parquet or not schema-valid). A damaged part's rows
cannot be read, so which stages wrote them is found from what the readable store lacks: each
stage the journal marks done has rows it must have left (a search its trials and their
epochs, a tested run its predictions and metrics, ...), and a stage missing some is damaged.
`study status` names the damaged parts, those stages and the command that reruns them;
`study resume` moves the damaged parts out of the store (into <study>/damaged/), un-marks
those stages, and its run redoes them: a search or arms stage by replaying Tune's own
records of its finished trials (no retraining), a tested run by scoring its checkpoint again,
the analysis from the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from heartbeatai.shell import command, shown_path
from heartbeatai.analysis.study_analysis import ANALYSIS_TABLES
from heartbeatai.arms import PREVALENCE, SEARCH
from heartbeatai.protocols import fold_protocol
from heartbeatai.results import ResultsStore, schema
from heartbeatai.study.lock import StageJournal
from heartbeatai.study.sealed_split import SELECTION_STAGE
from heartbeatai.study.study_config import StudyConfig

DAMAGED_DIR = "damaged"
STUDY = "study"  # the journal's key for study-level stages


@dataclass(frozen=True)
class DamagedPart:
    table: str
    part: str  # the part's file name
    reason: str

    def where(self) -> str:
        return f"results/{self.table}/{self.part}"


def damaged_parts(store: ResultsStore, study: str) -> list[DamagedPart]:
    """Every part of every table that cannot be read or breaks the schema."""
    found = []
    for table in schema.TABLES:
        for problem in store.read(study, table).attrs["corrupt"]:
            part, _, reason = problem.partition(": ")
            found.append(DamagedPart(table, part if schema.is_part_name(part) else "", reason or problem))
    return found


def damaged_stages(config: StudyConfig, journal: StageJournal, store: ResultsStore, study: str,
                   damaged: list[DamagedPart]) -> list[tuple[str, str]]:
    """(fold or "study", stage) of every stage marked done whose rows the readable store lacks.
    `study` is the folder's name (a copied study's config still names the original)."""
    tables = {name: store.read(study, name) for name in schema.TABLES}
    stale = []
    for fold, stages in journal.stages().items():
        if fold == STUDY:
            continue
        rows = {name: frame[frame["fold_id"] == fold] if "fold_id" in frame else frame
                for name, frame in tables.items()}
        lost = [stage for stage, record in stages.items() if not _has_rows(config, fold, stage, record, stages, rows)]
        if any(stage.startswith("tested:") for stage in lost) and "arms" in stages and "arms" not in lost:
            lost.append("arms")  # the stage that tests its runs
        stale.extend((fold, stage) for stage in lost)
    if journal.done(STUDY, "dataset_card") and tables["dataset_card"].empty:
        stale.append((STUDY, "dataset_card"))
    if journal.done(STUDY, "analysis") and (stale or any(d.table in ANALYSIS_TABLES for d in damaged)
                                            or not _analysis_rows(journal.get(STUDY, "analysis"), tables)):
        stale.append((STUDY, "analysis"))
    return stale


def repair(study_dir: Path, config: StudyConfig, journal: StageJournal, progress) -> list[tuple[str, str]]:
    """Move damaged parts out of the store and un-mark the stages that lost rows; returns them.
    The caller holds the study's lock, and its run then redoes those stages."""
    store = ResultsStore(str(study_dir.parent))
    damaged = damaged_parts(store, study_dir.name)
    if not damaged:
        return []
    for part in damaged:
        progress(f"damaged part {part.where()} ({part.reason}): moved to {DAMAGED_DIR}/{part.table}/")
        if part.part:
            target = study_dir / DAMAGED_DIR / part.table
            target.mkdir(parents=True, exist_ok=True)
            os.replace(study_dir / schema.RESULTS_DIR / part.table / part.part, target / part.part)
    stages = damaged_stages(config, journal, ResultsStore(str(study_dir.parent)), study_dir.name, damaged)
    for fold, stage in stages:
        journal.unmark(fold, stage)
        if stage == "arms":  # its tested runs are redone with it where their rows are gone
            journal.unmark(fold, "arms_retries")
    progress("rerunning " + (", ".join(f"{fold} {stage}" for fold, stage in stages) or "nothing: no stage lost rows"))
    return stages


def describe(study_dir: Path, config: StudyConfig, journal: StageJournal) -> list[str]:
    """`study status`'s lines about damage: none for a sound store."""
    store = ResultsStore(str(study_dir.parent))
    damaged = damaged_parts(store, study_dir.name)
    if not damaged:
        return []
    lines = [f"  damaged {part.where()}: {part.reason}" for part in damaged]
    stages = damaged_stages(config, journal, store, study_dir.name, damaged)
    named = ", ".join(f"{fold} {stage}" for fold, stage in stages) or "none (its rows are written again later)"
    lines.append(f"  stages that wrote the lost rows: {named}")
    lines.append(f"  repair: {command('study', 'resume', study_dir)} (moves the damaged parts to "
                 f"{shown_path(study_dir / DAMAGED_DIR)} and reruns those stages)")
    return lines


# -- what each stage leaves ------------------------------------------------------------------


def _has_rows(config: StudyConfig, fold: str, stage: str, record, stages: dict, rows: dict) -> bool:
    trials = rows["trials"].drop_duplicates("trial_id", keep="last")
    if stage == "search":
        search = _finished(trials[trials["arm"] == SEARCH])
        return (len(search) >= config.search.trials_per_fold and _epochs_complete(search, rows["epochs"])
                and _importances_complete(record, rows, SEARCH))
    if stage.startswith("search:"):  # an algorithm arm's own search (fold_runner.algorithm_stage)
        arm = stage.split(":", 1)[1]
        search = _finished(trials[(trials["arm"] == arm) & (trials["selection"] == "search")])
        return (len(search) >= config.search.trials_per_fold and _epochs_complete(search, rows["epochs"])
                and _importances_complete(record, rows, arm))
    if stage == SELECTION_STAGE:
        return _best_config(rows, "val")
    if stage.startswith(f"{SELECTION_STAGE}:"):  # an algorithm arm's selection, a best_configs row of its own
        return _best_config(rows, "val", stage.split(":", 1)[1])
    if stage == "tested":
        return _tested(rows, SEARCH, config.search_seed, "val", record_trial(stages, SELECTION_STAGE))
    if stage == "oracle":
        return _best_config(rows, "oracle") and _tested(rows, SEARCH, config.search_seed, "oracle",
                                                        record_trial(stages, "oracle"))
    if stage == "arms":
        arms = config.fold_arms(fold_protocol(fold))
        runs = _finished(trials[trials["selection"] == "val"])
        trained = {(a.name, s) for a in arms if a.trained for s in config.seeds}
        prevalence = all(_tested(rows, PREVALENCE, s, "val", PREVALENCE) for s in config.seeds
                         if any(a.name == PREVALENCE for a in arms))
        return trained <= set(zip(runs["arm"], runs["seed"])) and _epochs_complete(runs, rows["epochs"]) and prevalence
    if stage.startswith("tested:"):
        trial_id = stage.split(":", 1)[1]
        run = trials[trials["trial_id"] == trial_id]
        if run.empty:
            return False
        row = run.iloc[0]
        if row["status"] not in schema.SCORED_STATUSES:
            return True  # marked without rows: it had no checkpoint to test
        return _tested(rows, row["arm"], int(row["seed"]), "val", trial_id)
    if stage == "record_views":
        return not isinstance(record, int) or len(rows["record_views"]) >= record
    return True  # arms_retries: a count, no rows


def _importances_complete(record, rows: dict, arm: str) -> bool:
    """The search's importances rows are all there (the journal recorded how many it wrote;
    rows without an arm were written by full's search, before rows named it)."""
    expected = record.get("importances") if isinstance(record, dict) else None
    importances = rows["importances"]
    return expected is None or int((schema.searched_by(importances) == arm).sum()) >= expected


def record_trial(stages: dict, stage: str) -> str | None:
    record = stages.get(stage)
    return record.get("trial_id") if isinstance(record, dict) else None


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    abandoned = trials["error"].fillna("").str.startswith("abandoned")
    return trials[trials["status"].isin(schema.FINISHED_STATUSES) & ~abandoned]


def _epochs_complete(trials: pd.DataFrame, epochs: pd.DataFrame) -> bool:
    counts = epochs.groupby("trial_id")["epoch"].nunique()
    return all(counts.get(t, 0) >= int(n) for t, n in zip(trials["trial_id"], trials["epochs_run"].fillna(0)))


def _best_config(rows: dict, selection: str, arm: str = SEARCH) -> bool:
    from heartbeatai.analysis.consensus import of_arm

    return bool((of_arm(rows["best_configs"], arm)["selection"] == selection).any())


def _tested(rows: dict, arm: str, seed: int, selection: str, trial_id: str | None) -> bool:
    if trial_id is None:
        return True
    for table in ("predictions", "fold_metrics", "class_metrics"):
        frame = rows[table]
        own = frame[(frame["arm"] == arm) & (frame["seed"] == seed) & (frame["selection"] == selection)
                    & (frame["trial_id"] == trial_id)]
        if own.empty or (table == "predictions" and set(own["split"]) != {"val", "test"}):
            return False
    return True


def _analysis_rows(record, tables: dict) -> bool:
    """The analysis' own tables hold what it wrote (it replaces them whole)."""
    if not isinstance(record, dict):
        return True
    return all(len(tables[t]) >= int(record.get(t, 0)) for t in ("ablation_tests", "degradation"))
