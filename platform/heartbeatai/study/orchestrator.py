"""A whole study: data -> folds -> per fold search -> select -> test -> arms x seeds -> analysis.

Per fold (DESIGN.md, Study), in this order, each stage marked in the journal when its rows
are in the store, so `resume` skips it:

1. search      Tune + seeded Optuna TPE + ASHA over the search space (first seed)
2. selection   training-domain validation picks a trial; only now is the test split released
3. tested      the selected checkpoint is tested (selection = "val")
4. oracle      test-domain re-scoring of every saved search checkpoint (selection = "oracle")
5. arms        every arm x seed retrained from the selection (intra: `full` only), then tested
6. record_views a few test records of the selected model explained

Then the study-level analysis: best and consensus configurations, paired ablation tests
and the degradation split.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from heartbeatai.config import RunFile, TrialConfig
from heartbeatai.metric_names import fold_metric_of
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.schema import RunKey
from heartbeatai.arms import PREVALENCE, SEARCH, resolve_arms
from heartbeatai.study.lock import StageJournal, StudyLock
from heartbeatai.study.resources import (
    TrialResources,
    cluster_capacity,
    joining_cluster,
    max_concurrent_trials,
    plan_trial_resources,
)
from heartbeatai.study.sealed_split import SELECTION_STAGE, SealedSplit
from heartbeatai.study.selection import Selection, TestDomainOracle, TrainingDomainValidation
from heartbeatai.study.study_config import ConfigError, StudyConfig, dump_study_config, load_study_config
from heartbeatai.study.tune_runner import (
    FoldContext,
    TrialRecorder,
    arms_stage,
    mlflow_callback,
    run_stage,
    search_stage,
)

CONFIG_NAME = "study.yaml"
Progress = Callable[[str], None]
# Tables written per trial, epoch or tested run, compacted when the stage writing them ends.
PER_RUN_TABLES = ("trials", "epochs", "fold_metrics", "class_metrics", "predictions")
COMPACTED_AFTER = {"search": ("trials", "epochs"), "arms": PER_RUN_TABLES}


class StudyExists(RuntimeError):
    """`run` on a study directory that already holds a study: resume it or pick another name."""


@dataclass(frozen=True)
class StudyPaths:
    root: Path  # <storage>/<study>

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def experiments(self) -> Path:
        return self.root / "ray"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"


def start_study(config: StudyConfig, storage: str | None = None, progress: Progress = print) -> Path:
    """`study run`: a new study directory; refuses one that exists."""
    paths = StudyPaths(Path(config.study_dir(storage)).resolve())
    if paths.config.exists():
        raise StudyExists(f"{paths.root} already holds a study: `heartbeatai study resume {paths.root}`")
    paths.root.mkdir(parents=True, exist_ok=True)
    with StudyLock(paths.root):
        paths.config.write_text(dump_study_config(config))
        _run(config, paths, progress)
    return paths.root


def resume_study(study_dir: str | Path, progress: Progress = print) -> Path:
    """`study resume`: finish what an earlier driver left; finished stages are not rerun."""
    paths = StudyPaths(Path(study_dir).resolve())
    config = load_study_config(paths.config)
    with StudyLock(paths.root):
        _run(config, paths, progress)
    return paths.root


# -- the study ---------------------------------------------------------------------------


def _run(config: StudyConfig, paths: StudyPaths, progress: Progress) -> None:
    for runner in fold_runners(config, paths, progress):
        runner.run()
    _analyse(config, paths, StageJournal(paths.root), ResultsWriter(paths.root), progress)
    progress(f"study {config.name} finished: results in {paths.root / 'results'}")
    progress(f"  dashboard: heartbeatai dashboard --results {paths.root.parent}")
    progress(f"  export:    heartbeatai export {paths.root} --out {paths.root / 'export'}")


def fold_runners(config: StudyConfig, paths: StudyPaths, progress: Progress) -> Iterator["FoldRunner"]:
    """Set the study up (data, Ray, resources, dataset card), then one runner per fold in plan order."""
    journal = StageJournal(paths.root)
    data_path = prepared_dataset(config, paths.root.parent, progress)
    _ensure_ray()
    capacity = cluster_capacity()
    res = plan_trial_resources(
        config.resources.workers, config.resources.gpus_per_worker, config.resources.cpus_per_worker, capacity
    )
    concurrent = max_concurrent_trials(res, capacity)
    progress(f"{concurrent} trial(s) at a time; each {res.total()}")
    writer = ResultsWriter(paths.root)
    dataset = _open_dataset(data_path)
    classes = list(config.classes or dataset.classes)
    if not journal.done("study", "dataset_card"):
        from heartbeatai.data.card import dataset_card

        writer.write("dataset_card", dataset_card(dataset.records, classes))
        journal.mark("study", "dataset_card")
    for protocol in config.protocols:
        for fold_id in planned_folds(config, data_path, protocol):
            yield FoldRunner(config, paths, journal, writer, data_path, classes, res, concurrent, protocol,
                             fold_id, progress)


class FoldRunner:
    """The stages of one fold, each skipped when the journal says it is done."""

    def __init__(self, config: StudyConfig, paths: StudyPaths, journal: StageJournal, writer: ResultsWriter,
                 data_path: Path, classes: list[str], res: TrialResources, concurrent: int,
                 protocol: str, fold_id: str, progress: Progress):
        from heartbeatai.data.folds import read_folds

        self.config, self.paths, self.journal, self.writer = config, paths, journal, writer
        self.data_path, self.classes, self.res, self.concurrent = data_path, classes, res, concurrent
        self.protocol, self.fold_id, self.progress = protocol, fold_id, progress
        self.sealed = SealedSplit.from_folds(read_folds(data_path, protocol)[0], fold_id)
        self.dataset = _open_dataset(data_path)
        self.base = TrialConfig.model_validate(config.trial).with_overrides({"seed": config.seeds[0]})
        self.store = ResultsStore(str(paths.root.parent))

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
        self._once(SELECTION_STAGE, self._select)

    def _once(self, stage: str, work: Callable[[], object]) -> None:
        if self.journal.done(self.fold_id, stage):
            return
        record = work()
        self.journal.mark(self.fold_id, stage, record if record is not None else True)
        self._compact(COMPACTED_AFTER.get(stage, ()))

    def _compact(self, tables: tuple[str, ...]) -> None:
        """Merge a finished stage's parts: trials and epochs are written per report, and the
        dashboard reads every part. This process holds the study lock, as compaction wants."""
        for table in tables:
            self.writer.compact(table)

    def run_key(self, arm: str, seed: int, selection: str, trial_id: str) -> dict:
        return RunKey(self.config.name, self.protocol, self.fold_id, arm, seed, selection, trial_id).as_dict()

    def context(self, base: TrialConfig, arm_overrides: dict | None = None) -> FoldContext:
        return FoldContext(
            study=self.config.name, protocol=self.protocol, fold_id=self.fold_id, data_path=str(self.data_path),
            classes=tuple(self.classes), base_trial=base.model_dump(mode="json"),
            metric=self.config.selection.metric, mode=self.config.selection.mode, resources=self.res,
            train_storage=str(self.paths.experiments / "train"), max_failures=self.config.max_failures,
            arm_overrides=arm_overrides or {},
        )

    def _callbacks(self) -> list:
        tracking = self.config.tracking
        if tracking is None:
            return []
        return [mlflow_callback(tracking.tracking_uri, tracking.experiment_name or self.config.name)]

    # -- stages ----------------------------------------------------------------------------

    def _search(self) -> None:
        context = self.context(self.base)
        sched = self.config.scheduler
        stage = search_stage(
            context, self.config.search.space, self.config.search.trials_per_fold, self.config.seeds[0],
            self.config.optuna_storage or self.paths.optuna_url, sched.grace_period, sched.reduction_factor,
            sched.kind == "asha",
        )
        self.progress(f"[{self.fold_id}] search: {stage.num_samples} trials, {self.concurrent} at a time")
        recorder = TrialRecorder(context, str(self.paths.root), stage_arm=SEARCH, selection="search",
                                 progress=self.progress)
        run_stage(stage, context, str(self.paths.root), str(self.paths.experiments), self.concurrent,
                  recorder, self._callbacks())
        self._close_abandoned({"arm": SEARCH})
        self._importances()

    def _close_abandoned(self, where: dict) -> None:
        """Once a stage's experiment has finished, a trial still marked running was lost with a killed
        driver before Tune's experiment state recorded it; Tune ran its configuration as a new trial."""
        trials = self.store.read(self.config.name, "trials",
                                 filters={"protocol": self.protocol, "fold_id": self.fold_id, **where})
        stale = trials.drop_duplicates("trial_id", keep="last")
        stale = stale[stale["status"].isin(["pending", "running"])]
        if not stale.empty:
            self.writer.write("trials", stale.assign(
                status="errored", error="abandoned: the driver stopped before Tune recorded this trial"))

    def _importances(self) -> None:
        import optuna

        study = optuna.load_study(study_name=self.context(self.base).optuna_study_name,
                                  storage=self.config.optuna_storage or self.paths.optuna_url)
        finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        # fANOVA needs a few finished trials that differ in their parameters.
        if len(finished) < 3 or not study.best_trial.params:
            self.progress(f"[{self.fold_id}] importances skipped: {len(finished)} finished trial(s)")
            return
        importances = param_importances(study, seed=self.config.seeds[0])
        self.writer.write("importances", pd.DataFrame([
            {"study": self.config.name, "protocol": self.protocol, "fold_id": self.fold_id,
             "param": param, "importance": float(value)}
            for param, value in importances.items()
        ]))

    def _search_trials(self) -> pd.DataFrame:
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
            ids, probs, thresholds = self._predict(row.checkpoint_path, test_ids)
            values[row.trial_id] = float(evaluate_predictions(y, probs, thresholds, self.classes).macro[test_metric])
        oracle = TestDomainOracle().select(values, trials, self.base, test_metric, self.config.selection.mode)
        self.progress(f"[{self.fold_id}] oracle (upper bound): trial {oracle.trial_id}, test {test_metric} = {oracle.value:.4f}")
        self._test(oracle, "oracle")
        self._write_best_config("oracle", oracle)
        return oracle.record()

    def _arms(self, selection: Selection) -> None:
        arms = resolve_arms(self.config.arms if self.protocol == "lodo" else ["full"], self.config.user_arms)
        trained = [a for a in arms if a.trained]
        base = TrialConfig.model_validate(selection.trial)
        context = self.context(base, {a.name: dict(a.overrides) for a in trained})
        if trained:
            stage = arms_stage([a.name for a in trained], list(self.config.seeds))
            self.progress(f"[{self.fold_id}] arms: {len(trained)} arm(s) x {len(self.config.seeds)} seed(s)")
            recorder = TrialRecorder(context, str(self.paths.root), stage_arm=None, selection="val",
                                     progress=self.progress)
            run_stage(stage, context, str(self.paths.root), str(self.paths.experiments), self.concurrent,
                      recorder, self._callbacks())
            self._close_abandoned({"selection": "val"})
        runs = self.store.read(self.config.name, "trials", filters={
            "protocol": self.protocol, "fold_id": self.fold_id, "selection": "val"})
        for run in runs.drop_duplicates("trial_id", keep="last").itertuples():
            if self.journal.done(self.fold_id, f"tested:{run.trial_id}"):
                continue
            if run.status in ("completed", "early_stopped") and isinstance(run.checkpoint_path, str):
                self._test_checkpoint(run.checkpoint_path, run.arm, int(run.seed), "val", run.trial_id)
            self.journal.mark(self.fold_id, f"tested:{run.trial_id}")
        if any(a.name == PREVALENCE for a in arms):
            for seed in self.config.seeds:  # one row per seed, so it pairs like every other arm
                self._test_prevalence(seed)

    # -- testing ---------------------------------------------------------------------------

    def _test(self, selection: Selection, kind: str) -> None:
        """A search trial's checkpoint on the test split, keyed arm="search" and the selection kind."""
        self._test_checkpoint(selection.checkpoint_path, SEARCH, self.base.seed, kind, selection.trial_id)

    def _test_checkpoint(self, checkpoint: str, arm: str, seed: int, selection: str, trial_id: str) -> None:
        test_ids = self.sealed.release_test(self.journal)
        ids, probs, thresholds = self._predict(checkpoint, test_ids)
        self._write_evaluation(ids, probs, thresholds, arm, seed, selection, trial_id)

    def _test_prevalence(self, seed: int) -> None:
        from heartbeatai.study.evaluation import prevalence_scores, prevalence_thresholds

        test_ids = self.sealed.release_test(self.journal)
        train_prevalence = self._train_prevalence()
        scores = prevalence_scores(train_prevalence, len(test_ids))
        # The honest all-positive floor (F1 = 2 pi / (1 + pi)), not 0.5's F1 = 0 for every rare class.
        self._write_evaluation(test_ids, scores, prevalence_thresholds(train_prevalence), PREVALENCE, seed, "val",
                               PREVALENCE)

    def _write_evaluation(self, ids, probs, thresholds, arm: str, seed: int, selection: str, trial_id: str) -> None:
        from heartbeatai.study.evaluation import evaluate_test

        dataset = self.dataset
        rows = dataset.index_of(list(ids))
        key = self.run_key(arm, seed, selection, trial_id)
        tables = evaluate_test(
            list(ids), dataset.records["domain"].to_numpy()[rows], dataset.labels(self.classes)[rows], probs,
            thresholds, self.classes, self._train_prevalence(), key,
            y_clean=clean_labels(dataset, list(ids), self.classes),
            n_boot=self.config.bootstrap, seed=seed,
        )
        for table, frame in tables.items():
            self.writer.write(table, frame)

    def _predict(self, checkpoint: str, record_ids: list[str]):
        from heartbeatai.training.predict import predict

        return predict(Path(checkpoint), self.data_path, record_ids)

    def _labels(self, record_ids: list[str]) -> np.ndarray:
        dataset = self.dataset
        return dataset.labels(self.classes)[dataset.index_of(record_ids)]

    def _train_prevalence(self) -> np.ndarray:
        return self._labels(list(self.sealed.train_ids)).mean(axis=0)

    def _write_best_config(self, selection_kind: str, selection: Selection) -> None:
        from heartbeatai.config import Provenance
        from heartbeatai.data.folds import folds_path
        from heartbeatai.study.export import best_config_rows

        dataset = self.dataset
        run_file = RunFile(
            data={"path": str(self.data_path), "fingerprint": dataset.fingerprint},
            # The run's own metric is the study's validation metric, also for the oracle's pick.
            fold_id=self.fold_id, classes=tuple(self.classes), selection_metric=self.config.selection.metric,
            trial=TrialConfig.model_validate(selection.trial),
            provenance=Provenance.collect(dataset_fingerprint=dataset.fingerprint,
                                          folds_file=folds_path(self.data_path, self.protocol), classes=self.classes),
        )
        self.writer.write("best_configs", best_config_rows(
            self.config.name, self.protocol, self.fold_id, selection_kind, run_file, selection.metric, selection.value))

    def _record_views(self, selection: Selection) -> None:
        """Explain a few test records of the selected model for the dashboard (no torch there).

        Records are ranked by the rarest class (training prevalence) the model got wrong on
        them, then by the rarest class it got right; one view per record, for that class, and
        one record per class before any class gets a second.
        """
        import torch

        from heartbeatai.training.predict import load_trained_model

        key = self.run_key(SEARCH, self.base.seed, "val", selection.trial_id)
        predictions = self.store.read(self.config.name, "predictions", filters=key)
        thresholds = self.store.read(self.config.name, "class_metrics", filters={**key, "label_set": "noisy"})
        thresholds = thresholds.set_index("class")["threshold"].reindex(self.classes).to_numpy()
        probs = predictions[[f"p_{c}" for c in self.classes]].to_numpy()
        truth = predictions[[f"y_{c}" for c in self.classes]].to_numpy(dtype=bool)
        called = probs >= thresholds
        rarity = np.argsort(np.argsort(self._train_prevalence()))  # 0 = rarest
        picks = []
        for i in range(len(predictions)):
            wrong = np.flatnonzero(called[i] != truth[i])
            right = np.flatnonzero(truth[i] & called[i])
            if len(wrong):
                picks.append((0, rarity[wrong].min(), i, wrong[np.argmin(rarity[wrong])]))
            elif len(right):
                picks.append((1, rarity[right].min(), i, right[np.argmin(rarity[right])]))
        picks = sorted(picks)
        # One record per class first, so a few views cover several rare classes.
        first_of_class: dict[int, tuple] = {}
        for pick in picks:
            first_of_class.setdefault(pick[3], pick)
        picks = list(first_of_class.values()) + [p for p in picks if p not in first_of_class.values()]
        picks = picks[: self.config.record_views]
        model, state = load_trained_model(selection.checkpoint_path, torch.device("cpu"))
        trial = TrialConfig.model_validate(state["config"])
        rows = [self._record_view(model, trial, predictions.iloc[i], probs[i], truth[i], called[i], int(c), rank,
                                  misclassified=group == 0)
                for rank, (group, _, i, c) in enumerate(picks)]
        self.writer.write("record_views", pd.DataFrame([{**key, **row} for row in rows]))

    def _record_view(self, model, trial: TrialConfig, prediction: pd.Series, probs: np.ndarray, truth: np.ndarray,
                     called: np.ndarray, class_index: int, rank: int, misclassified: bool) -> dict:
        from heartbeatai.explain import attribute
        from heartbeatai.training.factory import signal_transform

        dataset = self.dataset
        row = int(dataset.index_of([prediction["record_id"]])[0])
        length = int(round(min(trial.preprocess.crop_seconds, 5.0) * dataset.fs))
        excerpt = dataset.window(row, 0, length)
        demographics = dataset.demographics()[row] if trial.model.demographics else None
        explained = attribute(model, signal_transform(trial, dataset.fs)(excerpt), [class_index],
                              demographics=demographics, n_steps=16)
        return {
            "record_id": prediction["record_id"], "class": self.classes[class_index],
            "true_labels": json.dumps([c for c, t in zip(self.classes, truth) if t]),
            "pred_labels": json.dumps([c for c, p in zip(self.classes, called) if p]),
            "probabilities": json.dumps({c: round(float(p), 4) for c, p in zip(self.classes, probs)}),
            "fs": int(dataset.fs),
            "signal": json.dumps(np.round(excerpt, 3).tolist()),
            "attribution": json.dumps(np.round(explained.values[0], 5).tolist()),
            "se_gates": json.dumps({str(k): np.round(v, 4).tolist() for k, v in explained.se_gates.items()}),
            "misclassified": bool(misclassified),
            "rank": rank,
        }


def param_importances(study, seed: int) -> dict[str, float]:
    """Optuna parameter importances of a fold's search, right for a maximised or a minimised metric.

    fANOVA (seeded, so a rerun gives the same figures): the share of the objective's variance
    each parameter explains, the same whichever way the study optimises. Optuna 5's default,
    PED-ANOVA, given a `target` ranks the parameters that reach *low* target values, wrong for
    `val_macro_auroc` (maximised); and it wants five trials in its top decile, which a search of
    a few dozen trials never has.
    """
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {param: float(value) for param, value in
            optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


# -- data and folds ----------------------------------------------------------------------


def prepared_dataset(config: StudyConfig, storage_root: Path, progress: Progress) -> Path:
    """The prepared dataset of the study: its path, or the synthetic spec generated and prepared once.

    Synthetic data is cached under <storage>/_data/synthetic-<fingerprint>, so studies with
    the same spec share it and a rerun never regenerates it.
    """
    if config.data.path is not None:
        path = Path(config.data.path).expanduser().resolve()
        if not (path / "records.parquet").is_file():
            raise FileNotFoundError(f"data.path {path} is not a prepared dataset (no records.parquet)")
        return path
    spec = config.data.synthetic
    cache = storage_root / "_data" / f"synthetic-{spec.fingerprint()}"
    prepared = cache / "prepared"
    if (prepared / "records.parquet").is_file():
        return prepared
    from heartbeatai.data.prepare import PrepareSettings, prepare
    from heartbeatai.data.synthetic import write_benchmark

    progress(f"generating the synthetic benchmark ({spec.records} records, {len(spec.domains)} domains) in {cache}")
    raw = write_benchmark(cache / "raw", spec.records, domains=spec.domains, shift=spec.shift,
                          shift_kinds=spec.shift_kinds, fs=spec.fs, seconds=spec.seconds, seed=spec.seed)
    tmp = cache / "prepared.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = prepare([Path(raw)], tmp, PrepareSettings(fs=spec.fs, max_seconds=spec.seconds), progress=False)
    progress(f"prepared {summary.prepared} records ({summary.skipped} skipped) into {prepared}")
    os.replace(tmp, prepared)
    return prepared


def planned_folds(config: StudyConfig, data_path: Path, protocol: str) -> list[str]:
    """The study's folds of a protocol, planning them (`data folds`) on first use."""
    from heartbeatai.data.folds import folds_path, read_folds, write_folds

    folds = config.folds
    if not folds_path(data_path, protocol).is_file():
        # Planned over every domain: the file belongs to the dataset, folds.domains picks the ones run.
        write_folds(data_path, protocol, k=folds.k or 5, val_fraction=folds.val_fraction or 0.15,
                    seed=folds.seed or 0)
    table, params = read_folds(data_path, protocol)
    wanted = {"val_fraction": folds.val_fraction, "fold_seed": folds.seed, "k": folds.k if protocol == "intra" else None}
    differing = {k: (params.get(k), v) for k, v in wanted.items() if v is not None and params.get(k) != v}
    if differing:
        raise ConfigError(f"folds: {protocol} folds of {data_path} were planned with other parameters "
                         f"(stored, config): {differing}; plan them again with `heartbeatai data folds`")
    fold_ids = list(dict.fromkeys(table["fold_id"]))
    if folds.domains is not None:
        fold_ids = [f for f in fold_ids if f.split(":")[1] in folds.domains]
    if protocol == "intra" and folds.intra_per_domain is not None:
        fold_ids = [f for f in fold_ids if int(f.split(":")[2]) < folds.intra_per_domain]
    return fold_ids


def clean_labels(dataset, record_ids: list[str], classes: list[str]) -> np.ndarray | None:
    """Clean (pre-noise) labels of records from the synthetic benchmark's manifest, else None.

    The generator writes <out>/<domain>/<record>.hea and <out>/synthetic_manifest.json with each
    record's true codes next to the noisy header codes; prepare keeps each record's source path.
    """
    from heartbeatai.data.synthetic import SYNTHETIC_MANIFEST
    from heartbeatai.labels import scored_vocabulary

    sources = dataset.records["source_path"].to_numpy()[dataset.index_of(record_ids)]
    manifests = {str(Path(src).parent.parent / SYNTHETIC_MANIFEST) for src in sources}
    if not all(Path(m).is_file() for m in manifests):
        return None
    truth = {name: codes for m in manifests for name, codes in _manifest_truth(m).items()}
    vocabulary = scored_vocabulary(include_st=True)
    column = {vocabulary.canonical(code): i for i, code in enumerate(vocabulary.select(classes).codes)}
    clean = np.zeros((len(record_ids), len(classes)), dtype=bool)
    for row, src in enumerate(sources):
        for code in truth.get(Path(src).stem, ()):
            if vocabulary.canonical(code) in column:
                clean[row, column[vocabulary.canonical(code)]] = True
    return clean


@functools.lru_cache(maxsize=4)
def _manifest_truth(manifest: str) -> dict[str, list[str]]:
    """record name -> true label codes; read once per driver (every tested run needs it)."""
    return {r["record"]: r["label_codes"] for r in json.loads(Path(manifest).read_text())["records"]}


def _open_dataset(path: Path):
    from heartbeatai.data.prepared import PreparedDataset

    return PreparedDataset(path)


def _ensure_ray() -> None:
    """Join the running cluster, else start a local Ray (on loopback: see resources.prefer_loopback)."""
    import ray

    if ray.is_initialized():
        return
    if joining_cluster():
        ray.init(address="auto", log_to_driver=False)
    else:
        # With the dashboard (and so the state API): Ray Train's placement-group cleaner polls
        # it; without, a finished multi-worker trial's workers keep their CPUs and the next
        # trial's worker group never starts.
        ray.init(log_to_driver=False)


# -- study-level analysis ----------------------------------------------------------------


def _analyse(config: StudyConfig, paths: StudyPaths, journal: StageJournal, writer: ResultsWriter,
             progress: Progress) -> None:
    store = ResultsStore(str(paths.root.parent))
    if not journal.done("study", "ablation_tests") and len(resolve_arms(config.arms, config.user_arms)) > 1:
        from heartbeatai.study.statistics import ablation_tests

        def arms_only(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["arm"] != SEARCH]

        read = lambda t: arms_only(store.read(config.name, t))  # noqa: E731
        tests = ablation_tests(read("fold_metrics"), read("predictions"), read("class_metrics"),
                               seed=config.seeds[0])
        writer.write("ablation_tests", tests)
        journal.mark("study", "ablation_tests")
        progress(f"ablation tests: {len(tests)} rows")
    if not journal.done("study", "consensus"):
        from heartbeatai.study.export import consensus_rows

        writer.write("best_configs", consensus_rows(store, config.name))
        journal.mark("study", "consensus")
    if "intra" in config.protocols and "lodo" in config.protocols and not journal.done("study", "degradation"):
        from heartbeatai.study.degradation import degradation_rows

        writer.write("degradation", degradation_rows(store, config.name, n_boot=config.bootstrap, seed=config.seeds[0]))
        journal.mark("study", "degradation")


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldPlan:
    protocol: str
    fold_id: str
    search_trials: int
    arm_runs: int  # trained arms x seeds
    train_records: int
    val_records: int


# Fixed costs measured on the 2-core development machine (Ray 2.60): a local Ray's start, a
# Tune experiment's set-up and tear-down, a trial's start (a Train worker group plus DDP
# about 15 s, DESIGN.md), and a fold's tests (selected, oracle and arm checkpoints).
RAY_START_S = 10.0
EXPERIMENT_S = 8.0
TRIAL_START_S = {"in_process": 4.0, "worker_group": 15.0}
FOLD_TEST_S = 10.0


@dataclass(frozen=True)
class StudyPlan:
    study_dir: Path
    folds: list[FoldPlan]
    epochs: int
    search_epochs: float  # epochs one fold's search spends, with ASHA's early stopping
    cpus: float
    cost: "RecordCost"

    def training_seconds(self) -> float:
        """CPU-seconds of training and validation spread over the CPUs."""
        cpu_seconds = sum(
            (self.search_epochs + f.arm_runs * self.epochs)
            * (f.train_records * self.cost.train_s + f.val_records * self.cost.eval_s)
            for f in self.folds
        )
        return cpu_seconds / self.cpus

    def overhead_seconds(self, concurrent: int, worker_group: bool) -> float:
        """Ray, Tune and trial start-up, plus testing: what a tiny model's study mostly spends."""
        trial = TRIAL_START_S["worker_group" if worker_group else "in_process"]
        runs = sum(f.search_trials + f.arm_runs for f in self.folds)
        stages = sum(2 if f.arm_runs else 1 for f in self.folds)
        return RAY_START_S + stages * EXPERIMENT_S + runs * trial / concurrent + len(self.folds) * FOLD_TEST_S


@dataclass(frozen=True)
class RecordCost:
    """CPU-seconds per record and epoch: a training crop's step, a validation record's windows."""

    train_s: float
    eval_s: float


def asha_expected_epochs(trials: int, max_t: int, grace: int, eta: float) -> float:
    """Epochs a synchronous successive-halving bracket spends: 1/eta of the trials pass each rung."""
    rungs = [grace]
    while rungs[-1] * eta < max_t:
        rungs.append(int(math.ceil(rungs[-1] * eta)))
    rungs.append(max_t)
    spent, previous = 0.0, 0
    for i, milestone in enumerate(rungs):
        spent += (milestone - previous) * eta ** -i
        previous = milestone
    return trials * spent


def plan_study(config: StudyConfig, storage: str | None, cost: RecordCost, cpus: float) -> StudyPlan:
    """The runs a study will make, from its config alone (nothing is generated or started)."""
    folds = []
    for protocol in config.protocols:
        for fold_id, n_train, n_val in _planned_fold_sizes(config, protocol):
            arms = resolve_arms(config.arms if protocol == "lodo" else ["full"], config.user_arms)
            folds.append(FoldPlan(protocol, fold_id, config.search.trials_per_fold,
                                  sum(a.trained for a in arms) * len(config.seeds), n_train, n_val))
    epochs = TrialConfig.model_validate(config.trial).optim.epochs
    sched = config.scheduler
    per_fold = (asha_expected_epochs(config.search.trials_per_fold, epochs, sched.grace_period, sched.reduction_factor)
                if sched.kind == "asha" else config.search.trials_per_fold * epochs)
    return StudyPlan(Path(config.study_dir(storage)), folds, epochs, per_fold, cpus, cost)


def _planned_fold_sizes(config: StudyConfig, protocol: str) -> list[tuple[str, int, int]]:
    """(fold id, train records, val records): from the folds file when there is one, else from the spec."""
    from heartbeatai.data.folds import folds_path, read_folds

    val = config.folds.val_fraction or 0.15
    if config.data.path is not None and folds_path(config.data.path, protocol).is_file():
        table, _ = read_folds(config.data.path, protocol)
        sizes = table.groupby(["fold_id", "split"]).size().unstack(fill_value=0)
        return [(f, int(sizes.loc[f].get("train", 0)), int(sizes.loc[f].get("val", 0)))
                for f in planned_folds(config, Path(config.data.path), protocol)]
    if config.data.path is not None:
        records = pd.read_parquet(Path(config.data.path) / "records.parquet", columns=["domain"])
        per_domain = records["domain"].value_counts().to_dict()
    else:
        spec = config.data.synthetic
        per_domain = {d: spec.records / len(spec.domains) for d in spec.domains}
    domains = [d for d in per_domain if config.folds.domains is None or d in config.folds.domains]
    if protocol == "lodo":
        total = sum(per_domain.values())
        return [(f"lodo:{d}", int((total - per_domain[d]) * (1 - val)), int((total - per_domain[d]) * val))
                for d in sorted(domains)]
    k = config.folds.k or 5
    used = min(k, config.folds.intra_per_domain or k)
    return [(f"intra:{d}:{i}", int(per_domain[d] * (k - 1) / k * (1 - val)), int(per_domain[d] * (k - 1) / k * val))
            for d in sorted(domains) for i in range(used)]


def calibrate_record_cost(config: StudyConfig, fs: int, repeats: int = 3) -> RecordCost:
    """Time the study's base model on this machine, one thread: a training step per crop, and a
    forward pass per validation window (records of 10 s, windows every eval_stride_seconds)."""
    import time

    import torch

    from heartbeatai.training.factory import model_from_config

    cfg = TrialConfig.model_validate(config.trial)
    samples = int(cfg.preprocess.crop_seconds * fs)
    batch = min(cfg.optim.batch_size, 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = model_from_config(cfg, len(config.classes) if config.classes else 26)
        x = torch.randn(batch, 12, samples)

        def best_of(step: Callable[[], object]) -> float:
            timings = []
            for _ in range(repeats + 1):  # the first call warms up allocators
                start = time.perf_counter()
                step()
                timings.append(time.perf_counter() - start)
            return min(timings[1:]) / batch

        train_s = best_of(lambda: model(x).sum().backward())
        model.eval()
        with torch.no_grad():
            forward_s = best_of(lambda: model(x))
    finally:
        torch.set_num_threads(threads)
    windows = max(1.0, 1 + (10.0 - cfg.preprocess.crop_seconds) / cfg.preprocess.eval_stride_seconds)
    return RecordCost(train_s=train_s, eval_s=forward_s * windows)
