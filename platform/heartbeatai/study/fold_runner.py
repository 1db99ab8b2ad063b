"""The study's policy for one fold: which stages run, in which order, and what each may see.

In this order (DESIGN.md, Study), each stage marked in the journal only once its rows are
in the store, so a rerun skips it and a killed driver loses nothing that finished:

1. search       seeded Optuna TPE + ASHA over the search space (first seed)
1a. search:<a>, selection:<a>   per algorithm arm a (`algorithms` in the config, LODO): its own
                search, `full`'s budget and scheduler, over the space plus the algorithm's
                declared parameters, its sampler seeded by (search seed, fold, algorithm); then
                its training-domain validation selection. Still sealed: no stage before
                `selection` releases a test record.
2. selection    training-domain validation picks a trial; only now is the test split released
3. tested       the selected checkpoint is tested (selection = "val")
4. oracle       test-domain re-scoring of every saved search checkpoint (selection = "oracle")
5. arms         every arm x seed retrained from the selection (an algorithm arm: from its own),
                then tested (intra: `full` only)
6. record_views a few test records of the selected model explained

The trials themselves are trained by the injected stage runner (stage_runner.py): Ray Tune
in a study, an in-process fake in the policy's tests. Their checkpoints are read by the
injected `CheckpointReader`: torch's, unless a test's fake writes planted ones. Nothing here
imports Ray, nor torch until a torch checkpoint is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import pandas as pd

from heartbeatai.arms import FULL, PREVALENCE, SEARCH, Arm
from heartbeatai.config import TrialConfig
from heartbeatai.metric_names import fold_metric_of
from heartbeatai.results import ResultsStore, ResultsWriter, write_study_summary
from heartbeatai.results.schema import ACTIVE_STATUSES, ERRORED, SCORED_STATUSES, RunKey
from heartbeatai.run_file import RunFile
from heartbeatai.study import interrupts
from heartbeatai.study.lock import StageJournal
from heartbeatai.study.sealed_split import SELECTION_STAGE, SealedSplit
from heartbeatai.study.selection import Selection, TestDomainOracle, TrainingDomainValidation
from heartbeatai.study.search_space import Distribution
from heartbeatai.study.stage_runner import (
    ArmsStage, FoldContext, SearchStage, StageRunner, algorithm_sampler_seed, fold_sampler_seed,
)
from heartbeatai.study.study_config import StudyConfig
from heartbeatai.study.trial_rows import TrialRows

if TYPE_CHECKING:
    from heartbeatai.data.prepared import PreparedDataset
    from heartbeatai.study.record_views import Explainer

Progress = Callable[[str], None]
# Tables written per trial, epoch or tested run, compacted when the stage writing them ends.
PER_RUN_TABLES = ("trials", "epochs", "fold_metrics", "class_metrics", "predictions")
COMPACTED_AFTER = {"search": ("trials", "epochs"), "arms": PER_RUN_TABLES}
# The journal's count of arms-stage retries of errored runs, per fold.
ARM_RETRIES = "arms_retries"


class CheckpointReader(Protocol):
    """What the fold runner asks of a trial's checkpoint once the stages have run."""

    def predict(self, checkpoint: str, data_path: Path,
                record_ids: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(record_ids, probabilities (N, C), thresholds (C,)) of the checkpoint on the records."""

    def explainer(self, checkpoint: str, dataset: "PreparedDataset") -> "Explainer":
        """What attributes the checkpoint's calls on a record to its leads and time (record_views.py)."""


class TorchCheckpoints:
    """The training loop's checkpoints; torch is imported only when one is read."""

    def predict(self, checkpoint: str, data_path: Path, record_ids: list[str]):
        from heartbeatai.training.predict import predict

        return predict(Path(checkpoint), data_path, record_ids)

    def explainer(self, checkpoint: str, dataset: "PreparedDataset") -> "Explainer":
        from heartbeatai.study.record_views import IntegratedGradients

        return IntegratedGradients(checkpoint, dataset)


@dataclass(frozen=True)
class StudyContext:
    """What every fold of a running study shares: its config, store, journal, data and stage runner."""

    config: StudyConfig
    root: Path  # <storage>/<study>
    journal: StageJournal
    writer: ResultsWriter
    data_path: Path
    classes: list[str]
    stage_runner: StageRunner
    optuna_storage: str  # an Optuna RDB URL or journal:<folder> (optuna_storage.py)
    progress: Progress = print
    checkpoints: CheckpointReader = TorchCheckpoints()

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(str(self.root.parent))


class FoldRunner:
    """The stages of one fold, each skipped when the journal says it is done."""

    def __init__(self, study: StudyContext, protocol: str, fold_id: str):
        from heartbeatai.data.folds import read_folds
        from heartbeatai.data.prepared import PreparedDataset

        self.study, self.protocol, self.fold_id = study, protocol, fold_id
        self.config, self.journal, self.writer = study.config, study.journal, study.writer
        self.data_path, self.classes, self.progress = study.data_path, study.classes, study.progress
        self.sealed = SealedSplit.from_folds(read_folds(study.data_path, protocol)[0], fold_id)
        self.dataset = PreparedDataset(study.data_path)
        # The search trains at the search seed; the arms retrain at the arm seeds, disjoint from
        # it, so `full` is never the validation-selected draw with its seed luck (DESIGN.md, Study).
        self.base = self.config.trial.with_overrides({"seed": self.config.search_seed})
        self.store = study.store

    def run(self) -> None:
        self.search_and_select()
        selection = Selection.from_record(self.journal.get(self.fold_id, SELECTION_STAGE))
        self._once("tested", lambda: self._test(selection, "val"))
        if self.config.selection.oracle:
            self._once("oracle", self._oracle)
        self._once("arms", lambda: self._arms(selection))
        if self.config.record_views:
            self._once("record_views", lambda: self._record_views(selection))

    def search_and_select(self) -> None:
        """The part of a fold that must not see its test split."""
        self.progress(f"[{self.fold_id}] train {len(self.sealed.train_ids)} / val {len(self.sealed.val_ids)} "
                      f"/ test {self.sealed.n_test} records (sealed until selection)")
        self._once("search", self._search)
        for arm in self.algorithm_arms():
            self._once(algorithm_stage("search", arm.name), lambda: self._algorithm_search(arm))
            self._once(algorithm_stage(SELECTION_STAGE, arm.name), lambda: self._algorithm_select(arm))
        self._once(SELECTION_STAGE, self._select)

    def algorithm_arms(self) -> list[Arm]:
        return [a for a in self.config.fold_arms(self.protocol) if a.algorithm is not None]

    def _once(self, stage: str, work: Callable[[], object]) -> None:
        if self.journal.done(self.fold_id, stage):
            return
        interrupts.check()  # between stages: a safe point
        record = work()
        self.journal.mark(self.fold_id, stage, record if record is not None else True)
        self._compact(COMPACTED_AFTER.get(stage.partition(":")[0], ()))
        write_study_summary(self.study.root)  # the dashboard's list of studies reads only this

    def _compact(self, tables: tuple[str, ...]) -> None:
        """Merge a finished stage's parts: trials and epochs are written per report, and the
        dashboard reads every part. This process holds the study lock, as compaction wants."""
        for table in tables:
            self.writer.compact(table)

    def run_key(self, arm: str, seed: int, selection: str, trial_id: str) -> dict:
        return RunKey(self.config.name, self.protocol, self.fold_id, arm, seed, selection, trial_id).as_dict()

    def context(self, base: TrialConfig, arm_overrides: dict | None = None,
                arm_bases: dict[str, TrialConfig] | None = None) -> FoldContext:
        return FoldContext(
            study=self.config.name, protocol=self.protocol, fold_id=self.fold_id, data_path=str(self.data_path),
            classes=tuple(self.classes), base_trial=base,
            metric=self.config.selection.metric, mode=self.config.selection.mode,
            arm_overrides=arm_overrides or {}, arm_bases=arm_bases or {},
        )

    def _rows(self, context: FoldContext, stage_arm: str | None, selection: str) -> TrialRows:
        return TrialRows(context, str(self.study.root), stage_arm=stage_arm, selection=selection,
                         progress=self.progress)

    # -- stages ----------------------------------------------------------------------------

    def search_stage(self, space: dict[str, Distribution], sampler_seed: int, arm: str = SEARCH) -> SearchStage:
        """A search with `full`'s budget: its trials per fold, its scheduler, one at a time or not.
        Every search of the fold, `full`'s and each algorithm arm's, is made here, so the budget
        cannot differ between them."""
        sched = self.config.scheduler
        return SearchStage(
            space=space, trials=self.config.search.trials_per_fold, sampler_seed=sampler_seed,
            optuna_storage=self.study.optuna_storage,
            grace_period=sched.grace_period, reduction_factor=sched.reduction_factor, asha=sched.kind == "asha",
            one_at_a_time=self.config.search.reproducible,
            name="search" if arm == SEARCH else f"search-{arm}", arm=arm,
        )

    def _run_search(self, stage: SearchStage, context: FoldContext) -> None:
        at_a_time = 1 if stage.one_at_a_time else self.study.stage_runner.concurrent
        whose = "" if stage.arm == SEARCH else f" {stage.arm}"
        self.progress(f"[{self.fold_id}]{whose} search: {stage.trials} trials, {at_a_time} at a time"
                      + (" (search.reproducible)" if stage.one_at_a_time else ""))
        self.study.stage_runner.run(stage, context, self._rows(context, stage.arm, "search"))
        self._close_abandoned({"arm": stage.arm, "selection": "search"})

    def _search(self) -> dict:
        context = self.context(self.base)
        stage = self.search_stage(self.config.search.space, fold_sampler_seed(self.config.search_seed, self.fold_id))
        self._run_search(stage, context)
        return {"importances": self._importances(context, stage)}

    def algorithm_base(self, arm: Arm) -> TrialConfig:
        """`full`'s base with the arm's algorithm (and its `algorithm_arms` overrides) in force:
        what its search samples around."""
        return self.config.algorithm_base(arm.algorithm, self.base)

    def algorithm_search_stage(self, arm: Arm) -> SearchStage:
        """The arm's own search: `full`'s space plus the algorithm's declared parameters (and its
        `algorithm_arms` space), its sampler seeded by (search seed, fold, algorithm) alone."""
        return self.search_stage(self.config.algorithm_space(arm.algorithm),
                                 algorithm_sampler_seed(self.config.search_seed, self.fold_id, arm.algorithm),
                                 arm=arm.name)

    def _algorithm_search(self, arm: Arm) -> dict:
        context, stage = self.context(self.algorithm_base(arm)), self.algorithm_search_stage(arm)
        self._run_search(stage, context)
        return {"importances": self._importances(context, stage)}

    def _algorithm_select(self, arm: Arm) -> dict:
        trials = self.store.read(self.config.name, "trials", filters={
            "protocol": self.protocol, "fold_id": self.fold_id, "arm": arm.name, "selection": "search"})
        selection = TrainingDomainValidation().select(trials, self.algorithm_base(arm), self.config.selection.mode)
        self.progress(f"[{self.fold_id}] {arm.name} selected trial {selection.trial_id}: "
                      f"{selection.metric} = {selection.value:.4f}")
        self._write_best_config("val", selection, arm=arm.name)  # `export` writes it under <out>/<arm>/
        return selection.record()

    def _close_abandoned(self, where: dict) -> None:
        """Once a stage has finished, a trial still marked running was lost with a killed driver
        before the stage runner's own state recorded it (Tune's experiment state), and the
        runner ran its configuration again as a new trial."""
        trials = self.store.read(self.config.name, "trials",
                                 filters={"protocol": self.protocol, "fold_id": self.fold_id, **where})
        stale = trials.drop_duplicates("trial_id", keep="last")
        stale = stale[stale["status"].isin(ACTIVE_STATUSES)]
        if not stale.empty:
            self.writer.write("trials", stale.assign(
                status=ERRORED, error="abandoned: the driver stopped before Tune recorded this trial"))

    def _importances(self, context: FoldContext, stage: SearchStage) -> int:
        """Writes the importances of the fold's `stage` (full's search or an algorithm arm's);
        returns their rows (the journal keeps it, so a damaged store's check knows what to expect)."""
        from heartbeatai.study.importances import importance_rows, search_importances
        from heartbeatai.study.optuna_storage import fold_storage

        importances, distinct = search_importances(fold_storage(self.study.optuna_storage, self.fold_id),
                                                   stage.optuna_study_name(context),
                                                   seed=self.config.search_seed)
        whose = "" if stage.arm == SEARCH else f" {stage.arm}"
        if importances is None:
            self.progress(f"[{self.fold_id}]{whose} importances skipped: {distinct} distinct completed trial(s)")
            return 0
        self.writer.write("importances", importance_rows(self.config.name, self.protocol, self.fold_id, importances,
                                                         distinct, arm=stage.arm))
        return len(importances)

    def _search_trials(self):
        return self.store.read(self.config.name, "trials",
                               filters={"protocol": self.protocol, "fold_id": self.fold_id, "arm": SEARCH})

    def _select(self) -> dict:
        selection = TrainingDomainValidation().select(self._search_trials(), self.base, self.config.selection.mode)
        self.progress(f"[{self.fold_id}] selected trial {selection.trial_id}: "
                      f"{selection.metric} = {selection.value:.4f}")
        self._write_best_config("val", selection)
        return selection.record()

    def _oracle(self) -> dict:
        from heartbeatai.metrics import evaluate_predictions

        trials = self._search_trials().drop_duplicates("trial_id", keep="last")
        test_ids = self.sealed.release_test(self.journal)
        y = self._labels(test_ids)
        test_metric = fold_metric_of(self.config.selection.metric)  # the config refuses an oracle without one
        values = {}
        for row in trials[trials["checkpoint_path"].notna()].itertuples():
            interrupts.check()
            ids, probs, thresholds = self._predict(row.checkpoint_path, test_ids)
            values[row.trial_id] = _test_figure(evaluate_predictions(y, probs, thresholds, self.classes), y, test_metric)
        oracle = TestDomainOracle().select(values, trials, self.base, test_metric, self.config.selection.mode)
        self.progress(f"[{self.fold_id}] oracle (upper bound): trial {oracle.trial_id}, test {test_metric} = {oracle.value:.4f}")
        self._test(oracle, "oracle")
        self._write_best_config("oracle", oracle)
        return oracle.record()

    def _arms(self, selection: Selection) -> dict:
        arms = self.config.fold_arms(self.protocol)
        trained = [a for a in arms if a.trained]
        errored: list[str] = []
        if trained:
            stage = ArmsStage(tuple(a.name for a in trained), tuple(self.config.seeds))
            self.progress(f"[{self.fold_id}] arms: {len(trained)} arm(s) x {len(self.config.seeds)} seed(s)")
            # An algorithm arm retrains its own search's selection as it is (its overrides made
            # that search's base); a component arm overrides `full`'s selection.
            bases = {a.name: Selection.from_record(self.journal.get(self.fold_id, algorithm_stage(
                SELECTION_STAGE, a.name))).trial for a in trained if a.algorithm is not None}
            errored = self._train_arms(stage, selection.trial,
                                       {a.name: dict(a.overrides) for a in trained if a.algorithm is None}, bases)
        for run in self._arm_runs().itertuples():
            if self.journal.done(self.fold_id, f"tested:{run.trial_id}") or run.trial_id in errored:
                continue
            interrupts.check()  # between tested runs
            if run.status in SCORED_STATUSES and isinstance(run.checkpoint_path, str):
                self._test_checkpoint(run.checkpoint_path, run.arm, int(run.seed), "val", run.trial_id)
            self.journal.mark(self.fold_id, f"tested:{run.trial_id}")
        if any(a.name == PREVALENCE for a in arms):
            for seed in self.config.seeds:  # one row per seed, so it pairs like every other arm
                self._test_prevalence(seed)
        return {"errored": errored}

    def _train_arms(self, stage: ArmsStage, base: TrialConfig, overrides: dict,
                    bases: dict[str, TrialConfig] | None = None) -> list[str]:
        """Train the arm runs; an errored run is retried (Tune restores it from its last checkpoint),
        up to the study's max_failures times, counted across drivers in the journal. Returns the
        runs still errored after that, each reported."""
        context = self.context(base, overrides, bases)
        retries = self.journal.get(self.fold_id, ARM_RETRIES) if self.journal.done(self.fold_id, ARM_RETRIES) else 0
        while True:
            self.study.stage_runner.run(stage, context, self._rows(context, None, "val"))
            self._close_abandoned({"selection": "val"})
            runs = self._arm_runs()
            errored = runs[(runs["status"] == ERRORED) & ~runs["error"].fillna("").str.startswith("abandoned")]
            if errored.empty:
                return []
            if retries >= self.config.max_failures:
                for run in errored.itertuples():
                    last = (run.error or "").strip().splitlines()[-1:] or ["no error text"]
                    self.progress(f"[{self.fold_id}] {run.arm} seed {run.seed} {run.trial_id} errored "
                                  f"{retries + 1} time(s); it is left untested: {last[0]}")
                return sorted(errored["trial_id"])
            retries += 1
            self.journal.mark(self.fold_id, ARM_RETRIES, retries)
            self.progress(f"[{self.fold_id}] {len(errored)} arm run(s) errored: retry {retries} of "
                          f"{self.config.max_failures} (max_failures)")

    def _arm_runs(self) -> pd.DataFrame:
        runs = self.store.read(self.config.name, "trials", filters={
            "protocol": self.protocol, "fold_id": self.fold_id, "selection": "val"})
        return runs.drop_duplicates("trial_id", keep="last")

    # -- testing ---------------------------------------------------------------------------

    def _test(self, selection: Selection, kind: str) -> None:
        """A search trial's checkpoint on the test split, keyed arm="search" and the selection kind."""
        self._test_checkpoint(selection.checkpoint_path, SEARCH, self.base.seed, kind, selection.trial_id)

    def _test_checkpoint(self, checkpoint: str, arm: str, seed: int, selection: str, trial_id: str) -> None:
        """Score the test records, and the validation records the analysis calibrates on."""
        test_ids = self.sealed.release_test(self.journal)
        val_ids = list(self.sealed.val_ids)
        ids, probs, thresholds = self._predict(checkpoint, test_ids + val_ids)
        self._write_evaluation({"test": probs[: len(test_ids)], "val": probs[len(test_ids):]},
                               {"test": test_ids, "val": val_ids}, thresholds, arm, seed, selection, trial_id)

    def _test_prevalence(self, seed: int) -> None:
        from heartbeatai.analysis.evaluation import prevalence_scores, prevalence_thresholds

        ids = {"test": self.sealed.release_test(self.journal), "val": list(self.sealed.val_ids)}
        train_prevalence = self._train_prevalence()
        scores = {split: prevalence_scores(train_prevalence, len(split_ids)) for split, split_ids in ids.items()}
        # The honest all-positive floor (F1 = 2 pi / (1 + pi)), not 0.5's F1 = 0 for every rare class.
        self._write_evaluation(scores, ids, prevalence_thresholds(train_prevalence), PREVALENCE, seed, "val",
                               PREVALENCE)

    def _write_evaluation(self, probs: dict[str, np.ndarray], ids: dict[str, list[str]], thresholds: np.ndarray,
                          arm: str, seed: int, selection: str, trial_id: str) -> None:
        """Predictions of both splits into the store, then the test split's metrics (analysis.evaluation)."""
        from heartbeatai.analysis.evaluation import evaluate_run, prediction_rows, run_predictions
        from heartbeatai.data.synthetic import clean_labels

        dataset = self.dataset
        key = self.run_key(arm, seed, selection, trial_id)
        frames = []
        for split, split_ids in ids.items():
            rows = dataset.index_of(split_ids)
            frames.append(prediction_rows(split_ids, dataset.records["domain"].to_numpy()[rows],
                                          probs[split], dataset.labels(self.classes)[rows], self.classes, key,
                                          split, y_clean=clean_labels(dataset, split_ids, self.classes)))
        predictions = pd.concat(frames, ignore_index=True)
        self.writer.write("predictions", predictions)
        by_split = {split: run_predictions(rows, self.classes) for split, rows in predictions.groupby("split")}
        analysis = self.config.analysis
        tables = evaluate_run(by_split["test"], by_split.get("val"), thresholds, self._train_prevalence(),
                              self.classes, key, min_positives=analysis.min_positives, n_boot=analysis.bootstrap,
                              seed=analysis.seed)
        for table, frame in tables.items():
            self.writer.write(table, frame)

    def _predict(self, checkpoint: str, record_ids: list[str]):
        return self.study.checkpoints.predict(checkpoint, self.data_path, record_ids)

    def _labels(self, record_ids: list[str]) -> np.ndarray:
        dataset = self.dataset
        return dataset.labels(self.classes)[dataset.index_of(record_ids)]

    def _train_prevalence(self) -> np.ndarray:
        return self._labels(list(self.sealed.train_ids)).mean(axis=0)

    def _write_best_config(self, selection_kind: str, selection: Selection, arm: str = SEARCH) -> None:
        from heartbeatai.run_file import Provenance
        from heartbeatai.data.folds import folds_path
        from heartbeatai.analysis.consensus import best_config_rows

        dataset = self.dataset
        run_file = RunFile(
            data={"path": str(self.data_path), "fingerprint": dataset.fingerprint},
            # The run's own metric is the study's validation metric, also for the oracle's pick.
            fold_id=self.fold_id, classes=tuple(self.classes), selection_metric=self.config.selection.metric,
            trial=selection.trial,
            provenance=Provenance.collect(dataset_fingerprint=dataset.fingerprint,
                                          folds_file=folds_path(self.data_path, self.protocol), classes=self.classes),
        )
        self.writer.write("best_configs", best_config_rows(
            self.config.name, self.protocol, self.fold_id, selection_kind, run_file, selection.metric, selection.value,
            trial_id=selection.trial_id, study_dir=self.study.root, arm=arm))

    def _record_view_run(self, selection: Selection) -> tuple[dict, str]:
        """The run whose records are shown: `full` at the first arm seed, the model every
        ablation is compared against; the search's selected trial where `full` has no tested run."""
        runs = self._arm_runs()
        if not self.config.seeds or runs.empty:
            return self.run_key(SEARCH, self.base.seed, "val", selection.trial_id), selection.checkpoint_path
        full = runs[(runs["arm"] == FULL) & (runs["seed"] == self.config.seeds[0])
                    & runs["status"].isin(SCORED_STATUSES) & runs["checkpoint_path"].notna()]
        if not full.empty and self.journal.done(self.fold_id, f"tested:{full['trial_id'].iloc[0]}"):
            run = full.iloc[0]
            return self.run_key(FULL, int(run["seed"]), "val", run["trial_id"]), run["checkpoint_path"]
        return self.run_key(SEARCH, self.base.seed, "val", selection.trial_id), selection.checkpoint_path

    def _record_views(self, selection: Selection) -> int:
        from heartbeatai.study.record_views import pick_record_views, record_view_rows

        key, checkpoint = self._record_view_run(selection)
        predictions = self.store.read(self.config.name, "predictions", filters={**key, "split": "test"})
        thresholds = self.store.read(self.config.name, "class_metrics", filters={**key, "label_set": "noisy"})
        thresholds = thresholds.set_index("class")["threshold"].reindex(self.classes).to_numpy()
        picks = pick_record_views(predictions, thresholds, self.classes, self._train_prevalence(),
                                  self.config.record_views)
        explainer = self.study.checkpoints.explainer(checkpoint, self.dataset)
        views = record_view_rows(explainer, self.dataset, predictions, thresholds, self.classes, picks, key)
        self.writer.write("record_views", views)
        return len(views)  # the journal keeps it: the store check knows how many rows to expect


def algorithm_stage(stage: str, arm: str) -> str:
    """The journal's name of an algorithm arm's search or selection: `search:algorithm-vrex`."""
    return f"{stage}:{arm}"


def _test_figure(result, y, metric: str) -> float:
    """A run's test figure as fold_metrics reports it: macro AUPRC over the classes with enough test
    positives (analysis/macro_intervals.py), every other macro figure as evaluate_predictions has it."""
    if metric != "macro_auprc":
        return float(result.macro[metric])
    from heartbeatai.analysis.macro_intervals import auprc_classes

    kept = auprc_classes(y, result.per_class["present"].to_numpy())
    return float(result.per_class["auprc"][kept].mean()) if kept.any() else float("nan")
