"""The Ray Tune stage runner: one Tune experiment per fold and stage.

The trainable is a plain function (DESIGN.md, Ray): with several workers it builds and fits
a Ray Train TorchTrainer that reports through Train's Tune callback; with one worker it runs
the same training loop in the trial process, saving the worker group's start-up. Either way
it only gets the fold id: the training path reads the fold's train and val splits, never
its test split (sealed_split.py).

What the rows of a trial say is decided in trial_rows.py; `TrialRowsCallback` only
translates Tune's callback hooks into it, so the in-process fake of heartbeatai.testing
writes the same rows without Tune.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from heartbeatai.study import interrupts
from heartbeatai.study.resources import TrialResources
from heartbeatai.study.study_config import StudyConfig
from heartbeatai.study.stage_runner import ARM_KEY, SEED_KEY, ArmsStage, FoldContext, SearchStage, Stage
from heartbeatai.study.trial_rows import TrialRef, TrialRows


@dataclass(frozen=True)
class TrialLaunch:
    """How the trainable runs a trial: its resources, and where Ray Train keeps multi-worker runs."""

    resources: TrialResources
    train_storage: str
    max_failures: int


def run_trial(tune_config: dict[str, Any], context: FoldContext, launch: TrialLaunch) -> None:
    """The Tune trainable: one training run of one configuration on one fold."""
    from heartbeatai.training.loop import run_training
    from heartbeatai.training.ray_train import fit_with_ray_train
    from heartbeatai.training.spec import TrainSpec

    spec = TrainSpec(
        trial=context.trial_config(tune_config),
        data_path=context.data_path,
        fold_id=context.fold_id,
        classes=context.classes,
        selection_metric=context.metric,
    )
    res = launch.resources
    if not res.in_process:
        from ray.tune.integration.ray_train import TuneReportCallback

        # Named by the trial id, which survives Tuner.restore: the inner run resumes its checkpoint.
        fit_with_ray_train(
            spec,
            workers=res.workers,
            gpus_per_worker=res.gpus_per_worker,
            cpus_per_worker=res.cpus_per_worker,
            storage_path=launch.train_storage,
            name=tune.get_context().get_trial_id(),
            max_failures=launch.max_failures,
            callbacks=[TuneReportCallback()],
        )
        return

    # Checkpoints are staged in the system's temp dir, not the trial dir: Tune syncs the trial
    # dirs with the experiment state and would race a staging dir being removed.
    import ray

    node_id = ray.get_runtime_context().get_node_id()  # where it trained, for the trials table

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report({**metrics, "node_id": node_id}, checkpoint=checkpoint)

    restored = tune.get_checkpoint()
    if restored is None:
        run_training(spec, report=report, resume_checkpoint=None)
        return
    with restored.as_directory() as resume_dir:
        run_training(spec, report=report, resume_checkpoint=Path(resume_dir))


class TrialRowsCallback(tune.Callback):
    """Tune's callback hooks, told to a stage's TrialRows.

    In-process trials hand their checkpoints to Tune (persisted paths arrive in
    `on_checkpoint`); Ray Train runs report theirs as `checkpoint_path` in the metrics
    (TuneReportCallback), which TrialRows reads from the result.
    """

    def __init__(self, rows: TrialRows):
        self.rows = rows

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # A SIGINT or SIGTERM the study recorded (interrupts.py) ends fit() the way Tune's own
        # SIGINT handler would: through its SIGUSR1 handler, which fit() installs and which saves
        # the experiment state before returning. fit() then returns; run() raises.
        if interrupts.interrupted() is not None and not getattr(self, "_stopping", False):
            self._stopping = True
            stop = signal.getsignal(signal.SIGUSR1)
            if callable(stop):
                stop(signal.SIGUSR1, None)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.rows.started(_ref(trial))

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
        self.rows.restored(_ref(trial), trial.last_result, checkpoint)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.rows.result(_ref(trial), result)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self.rows.checkpoint(_ref(trial), checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.rows.finished(_ref(trial), _finished(trials, trial), trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.rows.errored(_ref(trial), _error_text(trial), _finished(trials, trial))



def _ref(trial: Any) -> TrialRef:
    return TrialRef(trial.trial_id, trial.config, trial.path)


def _finished(trials: list, trial: Any) -> int:
    """Trials of the experiment done, this one included (its status changes after the hook)."""
    done = ("TERMINATED", "ERROR")
    return sum(t.status in done for t in trials) + (trial.status not in done)


def replay_finished(grid: tune.ResultGrid, rows: TrialRows) -> None:
    """Every trial of a finished experiment re-told to `rows` from Tune's own records (its result
    log and kept checkpoints): rows a damaged store lost are written again, others left alone."""
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id")
        if trial_id is None:
            continue
        frame = result.metrics_dataframe
        reported = frame.to_dict("records") if frame is not None else []
        checkpoints = [(c.path, m) for c, m in (result.best_checkpoints or [])]
        error = _error_text_at(os.path.join(result.path, "error.txt")) if result.error is not None else None
        rows.replay(TrialRef(trial_id, result.config, result.path), reported, checkpoints, error=error,
                    wall_time_s=metrics.get("time_total_s"))


class _TuneHints(logging.Filter):
    """Tune's advice for its own users ("Resume experiment with: Tuner.restore(...)", its stop
    notice) is wrong here: an interrupted study says `heartbeatai study resume` itself."""

    HINTS = ("Tuner.restore(", "Stop signal received", "has been interrupted")
    # Tune's reports on the trials it stopped for the interrupt: expected, and resumed.
    STOPPED = ("Trials did not complete", "Failed to fetch metrics")

    # On an interrupt Tune saves its experiment state while its search generator is still
    # replacing a temporary file beside it; the copy of that file fails with a traceback and
    # Tune's next save, logged right after, succeeds. One line, not a traceback, then.
    SYNC_RACE = "Saving experiment state to storage"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(hint in message for hint in self.HINTS):
            return False
        if interrupts.interrupted() is None:
            return True
        if message.startswith(self.SYNC_RACE):
            record.msg, record.args = "Tune's experiment-state save raced the interrupt; its next save follows", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        return not message.startswith(self.STOPPED)


def _quiet_tune_hints() -> None:
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis", "ray.tune.execution.experiment_state"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _TuneHints) for f in log.filters):
            log.addFilter(_TuneHints())


def _error_text(trial: Any) -> str:
    return _error_text_at(trial.error_file)


def _error_text_at(path: str | None) -> str:
    if path and os.path.exists(path):
        text = Path(path).read_text(errors="replace").strip()
        # The last line of a traceback is the error itself; keep a little context.
        return text[-2000:]
    return "trial failed (no error file)"


@dataclass(frozen=True)
class TuneStage:
    """One Tune experiment of a fold: its name, what it samples and how it schedules."""

    name: str
    param_space: dict[str, Any]
    num_samples: int
    search_alg: Any = None
    scheduler: Any = None


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive Tuner.restore. Tune saves no scheduler state (TuneController's
    __getstate__ drops it; the restored tuner holds the scheduler as it was made), so after a
    restore ASHA would judge the next trials against empty rungs and stop others than an
    uninterrupted run stops. Each trial Tune restores is told to its bracket again, epoch by
    epoch, from `history` (the epochs the store holds of it), so the rungs are as they were."""

    def __init__(self, *args: Any, history: dict[str, list[tuple[int, float]]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._history = dict(history or {})

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        bracket = self._trial_info[trial.trial_id]
        for epoch, value in self._history.pop(trial.trial_id, ()):
            bracket.on_result(trial, epoch, self._metric_op * value)


def search_stage(stage: SearchStage, context: FoldContext,
                 history: dict[str, list[tuple[int, float]]] | None = None) -> TuneStage:
    """Seeded TPE over the space, persisted in the fold's Optuna storage (optuna_storage.py;
    optuna-dashboard opens it), plus ASHA."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from heartbeatai.study.optuna_storage import fold_storage
    from heartbeatai.study.ray_start import quiet_library_logs
    from heartbeatai.study.search_space import optuna_space

    quiet_library_logs()  # Optuna's "A new study created in RDB": the study says its own lines
    search = OptunaSearch(
        optuna_space(dict(stage.space)),
        metric=context.metric,
        mode=context.mode,
        sampler=optuna.samplers.TPESampler(seed=stage.sampler_seed),
        study_name=stage.optuna_study_name(context),
        storage=fold_storage(stage.optuna_storage, context.fold_id),
    )
    max_epochs = context.epochs
    scheduler = (
        ResumableASHA(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(stage.grace_period, max_epochs),
            reduction_factor=stage.reduction_factor,
            history=history,
        )
        if stage.asha
        else FIFOScheduler()
    )
    return TuneStage(stage.name, {}, stage.trials, search, scheduler)


def arms_stage(stage: ArmsStage) -> TuneStage:
    """Every trained arm for every seed, run to the full budget (no early stopping)."""
    space = {ARM_KEY: tune.grid_search(list(stage.arms)), SEED_KEY: tune.grid_search(list(stage.seeds))}
    return TuneStage(stage.name, space, 1, None, FIFOScheduler())


def run_stage(
    stage: TuneStage,
    context: FoldContext,
    launch: TrialLaunch,
    experiment_root: str,
    max_concurrent: int,
    callbacks: list[Any],
) -> tune.ResultGrid:
    """Fit the stage's experiment, or resume it (Tuner.restore) when an earlier driver started it."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context, launch=launch), launch.resources.driver_request()
    )
    # Ray 2.60's output engine prints each experiment's configuration box and "View detailed
    # results"/TensorBoard lines even at verbose=0; the legacy engine at verbose=0 prints none of
    # it. Trial errors still reach stderr through Tune's logger, and TrialRows says a line
    # per finished trial, so the study's own progress is what the console shows.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from heartbeatai.study.ray_start import quiet_library_logs

    quiet_library_logs()  # Tune's "Wrote the latest version of all result files" per stage
    # Keeping only the best checkpoint forces an experiment snapshot per checkpoint; Tune warns
    # about each one. Epochs of seconds make that the normal case here, not a bottleneck.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    name = f"{context.fold_id.replace(':', '_')}-{stage.name}"
    path = f"{experiment_root.rstrip('/')}/{name}"
    _quiet_tune_hints()
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        # The restored tuner holds the callbacks and scheduler pickled when the first driver made
        # it, with that driver's (empty) TrialRows and ASHA rungs: this driver's, which read the
        # store, take their place (Ray has no public way to hand them to a restored tuner).
        tuner._local_tuner.get_run_config().callbacks = list(callbacks)
        if stage.scheduler is not None:
            tuner._local_tuner._tune_config.scheduler = stage.scheduler
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
                reuse_actors=launch.resources.in_process,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=experiment_root,
                # num_to_keep=1 with a score keeps the best; Ray always keeps the latest too.
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=context.metric, checkpoint_score_order=context.mode
                ),
                failure_config=tune.FailureConfig(max_failures=launch.max_failures),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    return tuner.fit()


class TuneStageRunner:
    """The study's stage runner on Ray: a Tune experiment per stage, under `experiment_root`."""

    def __init__(self, launch: TrialLaunch, concurrent: int, experiment_root: str, callbacks: list[Any] = ()):
        self.launch = launch
        self.concurrent = concurrent
        self.experiment_root = experiment_root
        self.callbacks = list(callbacks)

    @classmethod
    def for_study(cls, config: StudyConfig, experiment_root: Path,
                  progress: Callable[[str], None]) -> "TuneStageRunner":
        """Join or start Ray, then size the trials to the cluster at its largest (resources.py)."""
        from heartbeatai.study.ray_start import ensure_ray
        from heartbeatai.study.resources import cluster_capacity, max_concurrent_trials, plan_trial_resources

        ensure_ray()
        interrupts.rearm()  # Ray's own SIGTERM handler would abort the driver mid-write
        capacity = cluster_capacity()
        res = plan_trial_resources(
            config.resources.workers, config.resources.gpus_per_worker, config.resources.cpus_per_worker, capacity
        )
        concurrent = max_concurrent_trials(res, capacity)
        progress(f"{concurrent} trial(s) at a time; each {res.total()}")
        callbacks = []
        if config.tracking is not None:
            callbacks.append(mlflow_callback(config.tracking.tracking_uri,
                                             config.tracking.experiment_name or config.name))
        launch = TrialLaunch(res, str(experiment_root / "train"), config.max_failures)
        return cls(launch, concurrent, str(experiment_root), callbacks)

    def run(self, stage: Stage, context: FoldContext, rows: TrialRows) -> None:
        if isinstance(stage, SearchStage):
            experiment = search_stage(stage, context, rows.history(context.metric))
        else:
            experiment = arms_stage(stage)
        # Arms trials are fixed configurations without a scheduler: their order changes nothing.
        concurrent = 1 if isinstance(stage, SearchStage) and stage.one_at_a_time else self.concurrent
        grid = run_stage(experiment, context, self.launch, self.experiment_root, concurrent,
                         [TrialRowsCallback(rows), *self.callbacks])
        interrupts.check()  # Tune stopped early for a signal: the stage is not done
        replay_finished(grid, rows)


def mlflow_callback(tracking_uri: str | None, experiment_name: str) -> Any:
    """Ray's MLflow logger; mlflow is an optional extra (`pip install heartbeatai[tracking]`)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment_name, save_artifact=False)
