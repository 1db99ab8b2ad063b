"""One Ray Tune experiment per fold and stage: the Optuna/ASHA search, or the arms x seeds retrain.

The trainable is a plain function (DESIGN.md, Ray): with several workers it builds and fits
a Ray Train TorchTrainer that reports through Train's Tune callback; with one worker it runs
the same training loop in the trial process, saving the worker group's start-up. Either way
it only gets the fold id: the training path reads the fold's train and val splits, never
its test split (sealed_split.py).

Rows reach the results store as trials run (`TrialRecorder`), so a study in progress is
readable and a killed driver loses at most the last few seconds of epoch rows.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from heartbeatai.config import TrialConfig, flatten_config
from heartbeatai.metric_names import VALIDATION_METRICS
from heartbeatai.results.schema import RUN_KEY, RunKey
from heartbeatai.results.schema import table as results_table
from heartbeatai.results import ResultsWriter
from heartbeatai.study.resources import TrialResources

# Keys of a Tune trial config that are not trial-config overrides.
ARM_KEY, SEED_KEY = "arm", "seed"
EPOCH_FLUSH_SECONDS = 20.0


@dataclass(frozen=True)
class FoldContext:
    """Everything a trial of one fold needs; plain values so Ray can ship it to trial processes."""

    study: str
    protocol: str
    fold_id: str
    data_path: str
    classes: tuple[str, ...]
    base_trial: Mapping[str, Any]  # TrialConfig as a plain dict
    metric: str
    mode: str
    resources: TrialResources
    train_storage: str  # where multi-worker trials keep their Ray Train runs
    max_failures: int
    arm_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def optuna_study_name(self) -> str:
        """Unique within any shared Optuna RDB: `<study>/<fold>`."""
        return f"{self.study}/{self.fold_id}"

    def trial_config(self, tune_config: Mapping[str, Any]) -> TrialConfig:
        """The base configuration with the arm's overrides, then sampled values, then the seed."""
        overrides = dict(self.arm_overrides.get(tune_config.get(ARM_KEY), {}))
        overrides.update({k: v for k, v in tune_config.items() if k not in (ARM_KEY, SEED_KEY)})
        if SEED_KEY in tune_config:
            overrides["seed"] = tune_config[SEED_KEY]
        return TrialConfig.model_validate(dict(self.base_trial)).with_overrides(overrides)


def run_trial(tune_config: dict[str, Any], context: FoldContext) -> None:
    """The Tune trainable: one training run of one configuration on one fold."""
    from heartbeatai.training.loop import run_training
    from heartbeatai.training.ray_train import fit_with_ray_train
    from heartbeatai.training.spec import TrainSpec

    # Checkpoints are staged in the system's temp dir, not the trial dir: Tune syncs the trial
    # dirs with the experiment state and would race a staging dir being removed.
    spec = TrainSpec(
        trial=context.trial_config(tune_config),
        data_path=context.data_path,
        fold_id=context.fold_id,
        classes=context.classes,
        selection_metric=context.metric,
    )
    res = context.resources
    if not res.in_process:
        from ray.tune.integration.ray_train import TuneReportCallback

        # Named by the trial id, which survives Tuner.restore: the inner run resumes its checkpoint.
        fit_with_ray_train(
            spec,
            workers=res.workers,
            gpus_per_worker=res.gpus_per_worker,
            cpus_per_worker=res.cpus_per_worker,
            storage_path=context.train_storage,
            name=tune.get_context().get_trial_id(),
            max_failures=context.max_failures,
            callbacks=[TuneReportCallback()],
        )
        return

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(dict(metrics), checkpoint=checkpoint)

    restored = tune.get_checkpoint()
    if restored is None:
        run_training(spec, report=report, resume_checkpoint=None)
        return
    with restored.as_directory() as resume_dir:
        run_training(spec, report=report, resume_checkpoint=Path(resume_dir))


class TrialRecorder(tune.Callback):
    """Writes the trials and epochs tables as trials report, finish or fail.

    Tracks each trial's best checkpoint by the selection metric: in-process trials hand
    their checkpoints to Tune (persisted paths arrive in `on_checkpoint`), Ray Train runs
    report theirs as `checkpoint_path` in the metrics (TuneReportCallback). Says one line
    per finished trial through ``progress``: Tune's own tables are off (run_stage), so a
    long stage shows its progress here.
    """

    def __init__(self, context: FoldContext, study_dir: str, stage_arm: str | None, selection: str,
                 progress: Callable[[str], None] | None = None):
        self.context = context
        self.study_dir = study_dir
        self.stage_arm = stage_arm  # "search" for the search; None: the trial's own arm
        self.selection = selection
        self.progress = progress
        self._writer: ResultsWriter | None = None
        self._epochs: dict[str, list[dict[str, Any]]] = {}
        self._last: dict[str, dict[str, Any]] = {}  # latest result per trial
        self._best: dict[str, tuple[float, int, str | None]] = {}  # value, epoch, checkpoint
        self._started: dict[str, float] = {}
        self._last_flush = time.monotonic()

    # Ray pickles callbacks into the experiment state; the writer holds a filesystem handle,
    # and the progress callable may not pickle (a restored recorder prints).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writer": None, "progress": None}

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(self.study_dir)
        return self._writer

    def key(self, trial: Any) -> dict[str, Any]:
        cfg = trial.config
        return RunKey(
            study=self.context.study,
            protocol=self.context.protocol,
            fold_id=self.context.fold_id,
            arm=self.stage_arm or cfg[ARM_KEY],
            seed=int(cfg.get(SEED_KEY, self.context.base_trial.get("seed", 0))),
            selection=self.selection,
            trial_id=trial.trial_id,
        ).as_dict()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started.setdefault(trial.trial_id, time.time())
        self._write_trial(trial, "running")

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A restored trial continues from its latest checkpoint; earlier ones are only known to Tune.
        if trial.checkpoint is not None and trial.last_result:
            self._offer(trial.trial_id, trial.last_result, trial.checkpoint.path)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        self._last[trial.trial_id] = dict(result)
        self._epochs.setdefault(trial.trial_id, []).append(
            {**self.key(trial), **{k: result.get(k) for k in _EPOCH_TABLE_COLUMNS}}
        )
        if "checkpoint_path" in result:  # a Ray Train run: its checkpoint is already persisted
            self._offer(trial.trial_id, result, result["checkpoint_path"])
        if time.monotonic() - self._last_flush > EPOCH_FLUSH_SECONDS:
            self._flush_epochs()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        last = self._last.get(trial.trial_id)
        if last is not None:
            self._offer(trial.trial_id, last, checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs_run = int(self._last.get(trial.trial_id, trial.last_result or {}).get("epoch", 0))
        planned = self.context.trial_config(trial.config).optim.epochs
        status = "completed" if epochs_run >= planned else "early_stopped"
        self._write_trial(trial, status)
        self._say_finished(trial, status, trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        self._write_trial(trial, "errored", error=error)
        self._say_finished(trial, "errored", trials, error)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._flush_epochs()

    # -- internals ------------------------------------------------------------------------

    def _say_finished(self, trial: Any, status: str, trials: list, error: str | None = None) -> None:
        key = self.key(trial)
        who = "trial" if self.stage_arm else f"{key['arm']} seed {key['seed']}"
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials) + (trial.status not in ("TERMINATED", "ERROR"))
        value, best_epoch, _ = self._best.get(trial.trial_id, (None, None, None))
        if error is not None:
            outcome = error.strip().splitlines()[-1] if error.strip() else "failed"
        elif value is None:
            outcome = f"no {self.context.metric} reported"
        else:
            outcome = f"{self.context.metric} = {value:.4f} (epoch {best_epoch})"
        elapsed = time.time() - self._started.get(trial.trial_id, time.time())
        say = self.progress or print
        say(f"[{self.context.fold_id}] {who} {trial.trial_id} {status} after {elapsed:.0f} s "
            f"({finished} finished): {outcome}")

    def _offer(self, trial_id: str, result: Mapping[str, Any], path: str | None) -> None:
        value = result.get(self.context.metric)
        if value is None:
            return
        sign = 1.0 if self.context.mode == "max" else -1.0
        best = self._best.get(trial_id)
        if best is None or sign * value > sign * best[0] or (value == best[0] and best[2] is None):
            self._best[trial_id] = (float(value), int(result.get("epoch", 0)), path)

    def _flush_epochs(self) -> None:
        rows = [row for buffered in self._epochs.values() for row in buffered]
        self._epochs.clear()
        self._last_flush = time.monotonic()
        if rows:
            self.writer.write("epochs", pd.DataFrame(rows))

    def _write_trial(self, trial: Any, status: str, error: str | None = None) -> None:
        if status != "running":
            self._flush_epochs()
        cfg = self.context.trial_config(trial.config)
        last = self._last.get(trial.trial_id, {})
        value, best_epoch, checkpoint = self._best.get(trial.trial_id, (None, None, None))
        row = {
            **self.key(trial),
            "status": status,
            "error": error,
            "best_epoch": best_epoch,
            "epochs_run": int(last.get("epoch", 0)),
            "wall_time_s": time.time() - self._started.get(trial.trial_id, time.time()),
            **{m: last.get(m) for m in VALIDATION_METRICS},
            "selection_metric": self.context.metric,
            "selection_value": value,
            "checkpoint_path": checkpoint,
            "provenance": json.dumps({"tune_trial_dir": trial.path, "data_path": self.context.data_path}),
            **{f"cfg.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in flatten_config(cfg).items()},
        }
        self.writer.write("trials", pd.DataFrame([row]))




# The epochs table's own columns (beyond the run key), as the schema declares them.
_EPOCH_TABLE_COLUMNS = tuple(c for c in results_table("epochs").columns if c not in RUN_KEY)


def _error_text(trial: Any) -> str:
    path = trial.error_file
    if path and os.path.exists(path):
        text = Path(path).read_text(errors="replace").strip()
        # The last line of a traceback is the error itself; keep a little context.
        return text[-2000:]
    return "trial failed (no error file)"


@dataclass(frozen=True)
class Stage:
    """One Tune experiment of a fold: its name, what it samples and how it schedules."""

    name: str
    param_space: dict[str, Any]
    num_samples: int
    search_alg: Any = None
    scheduler: Any = None


def search_stage(
    context: FoldContext,
    space: Mapping[str, Any],
    trials: int,
    sampler_seed: int,
    optuna_storage: str,
    grace_period: int,
    reduction_factor: float,
    use_asha: bool,
) -> Stage:
    """The search runs the base configuration's seed. Seeded TPE over the space, persisted in an Optuna RDB (optuna-dashboard opens it), plus ASHA."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from heartbeatai.study.search_space import optuna_space

    search = OptunaSearch(
        optuna_space(space),
        metric=context.metric,
        mode=context.mode,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        study_name=context.optuna_study_name,
        storage=optuna.storages.RDBStorage(optuna_storage),
    )
    max_epochs = TrialConfig.model_validate(dict(context.base_trial)).optim.epochs
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(grace_period, max_epochs),
            reduction_factor=reduction_factor,
        )
        if use_asha
        else FIFOScheduler()
    )
    return Stage("search", {}, trials, search, scheduler)


def arms_stage(arms: list[str], seeds: list[int]) -> Stage:
    """Every trained arm for every seed, run to the full budget (no early stopping)."""
    space = {ARM_KEY: tune.grid_search(arms), SEED_KEY: tune.grid_search(seeds)}
    return Stage("arms", space, 1, None, FIFOScheduler())


def run_stage(
    stage: Stage,
    context: FoldContext,
    study_dir: str,
    experiment_root: str,
    max_concurrent: int,
    recorder: TrialRecorder,
    extra_callbacks: list[Any] = (),
) -> tune.ResultGrid:
    """Fit the stage's experiment, or resume it (Tuner.restore) when an earlier driver started it."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), context.resources.driver_request()
    )
    # Ray 2.60's output engine prints each experiment's configuration box and "View detailed
    # results"/TensorBoard lines even at verbose=0; the legacy engine at verbose=0 prints none of
    # it. Trial errors still reach stderr through Tune's logger, and TrialRecorder says a line
    # per finished trial, so the study's own progress is what the console shows.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Keeping only the best checkpoint forces an experiment snapshot per checkpoint; Tune warns
    # about each one. Epochs of seconds make that the normal case here, not a bottleneck.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    name = f"{context.fold_id.replace(':', '_')}-{stage.name}"
    path = f"{experiment_root.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=stage.param_space,
            tune_config=tune.TuneConfig(
                metric=context.metric,
                mode=context.mode,
                search_alg=stage.search_alg,
                scheduler=stage.scheduler,
                num_samples=stage.num_samples,
                max_concurrent_trials=max_concurrent,
                # In-process trials all ask for the same resources: reusing their processes saves
                # each trial the process start and the torch import.
                reuse_actors=context.resources.in_process,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=experiment_root,
                # num_to_keep=1 with a score keeps the best; Ray always keeps the latest too.
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=context.metric, checkpoint_score_order=context.mode
                ),
                failure_config=tune.FailureConfig(max_failures=context.max_failures),
                callbacks=[recorder, *extra_callbacks],
                verbose=0,
            ),
        )
    return tuner.fit()


def mlflow_callback(tracking_uri: str | None, experiment_name: str) -> Any:
    """Ray's MLflow logger; mlflow is an optional extra (`pip install heartbeatai[tracking]`)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback


    return MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment_name, save_artifact=False)

