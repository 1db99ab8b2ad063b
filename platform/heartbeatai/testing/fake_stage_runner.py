"""A stage runner without Ray: each trial of a stage trained in this process, one after another.

The study policy (fold_runner.py) is what its tests are about; Tune only runs trials. This
fake runs them one by one with an injected `TrainTrial`, by default the real training loop
(`train_in_process`: a tiny network trains in about a second; planted_stage_runner.py's
plants its epochs instead), tells a `TrialRows` what happened in the order Tune's callbacks
do (start, result then checkpoint per epoch, finish or error), and keeps what Tune keeps
that the policy relies on:

- the search samples from a seeded Optuna TPE study persisted in the stage's Optuna storage
  (as Ray's OptunaSearch does: last reported value told, errors told as failed), so the
  fold's importances are computed from it;
- ASHA's stopping rule (Ray's `_Bracket`, one bracket) on `epoch`, so some search trials
  end early-stopped;
- checkpoints persisted in the trial's folder under the study, one per epoch, which the
  fold runner selects, tests and re-scores;
- an experiment state per stage that records a trial when it finishes: a rerun skips the
  finished trials and runs the rest, and a trial the driver was killed in is lost, run again
  under a new id, as Tune does with a trial its experiment state had not yet recorded;
- Tune's stop on an interrupt (SIGINT or SIGTERM, heartbeatai.study.interrupts): the trial
  in progress is paused at its last reported epoch and the stage raises StudyInterrupted; a
  rerun resumes it from that checkpoint under the same id, as Tuner.restore does;
- `resume_errored`: a rerun of the arms stage retries its errored trials, from their last
  checkpoint, under the same ids;
- Tune's own records of finished trials (their results and kept checkpoints): every run
  re-tells them to `TrialRows.replay`, which rewrites what a damaged store lost.

`kill_after_epochs` stands in for a killed driver: `DriverKilled` is raised once that many
epochs of the runner have been reported, mid-trial, after their rows were written.
`interrupt_after_epochs` sends this process SIGINT at that point instead, as Ctrl-C would.
`erroring_trials` names trials, by the order this runner starts them (0: its first, a retry
counting as a start), that raise inside training.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import traceback
from collections.abc import Collection
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from heartbeatai.config import TrialConfig
from heartbeatai.study import interrupts
from heartbeatai.study.stage_runner import ArmsStage, FoldContext, SearchStage, Stage
from heartbeatai.study.trial_rows import TrialRef, TrialRows

STATE_FILE = "fake_experiment_state.json"
SAMPLER_FILE = "fake_sampler.pkl"

# report(metrics, checkpoint_dir): once per epoch; the directory is valid only during the call.
Report = Callable[[dict[str, Any], Path | None], None]
# Runs one trial's epochs from `resume` (its last kept checkpoint, or None) to its budget,
# reporting each; raises whatever a failing trial raises.
TrainTrial = Callable[[TrialConfig, FoldContext, Report, Path | None], None]


def train_in_process(trial: TrialConfig, context: FoldContext, report: Report, resume: Path | None) -> None:
    """The real training loop on CPU, in this process."""
    import torch

    from heartbeatai.training.loop import run_training
    from heartbeatai.training.spec import TrainSpec

    spec = TrainSpec(trial=trial, data_path=context.data_path, fold_id=context.fold_id, classes=context.classes,
                     selection_metric=context.metric)
    # One thread, as Ray gives a one-CPU trial process (OMP_NUM_THREADS=1): on a loaded
    # machine torch's default of a thread per core is several times slower for tiny models.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(spec, report=report, device=torch.device("cpu"), loader_workers=0, resume_checkpoint=resume)
    finally:
        torch.set_num_threads(threads)


class DriverKilled(RuntimeError):
    """The fake's stand-in for a study driver killed in the middle of a stage."""


class _EarlyStopped(Exception):
    """ASHA stopped the trial at a rung (raised out of the loop's report)."""


class _Paused(Exception):
    """Tune stopped the trial for an interrupt; it resumes from its last checkpoint."""


class FakeStageRunner:
    """Runs every trial of a stage in-process; see the module's docstring for what it mimics."""

    concurrent = 1

    def __init__(self, root: str | os.PathLike, *, train: TrainTrial = train_in_process,
                 kill_after_epochs: int | None = None, interrupt_after_epochs: int | None = None,
                 erroring_trials: Collection[int] = ()):
        self.root = Path(root)
        self.train = train
        self.kill_after_epochs = kill_after_epochs
        self.interrupt_after_epochs = interrupt_after_epochs
        self.erroring_trials = set(erroring_trials)
        self.epochs_reported = 0
        self.trials_started: list[str] = []

    def run(self, stage: Stage, context: FoldContext, rows: TrialRows) -> None:
        folder = self.root / f"{context.fold_id.replace(':', '_')}-{stage.name}"
        state = _ExperimentState(folder)
        state.replay(rows)
        if isinstance(stage, SearchStage):
            self._search(stage, context, rows, state)
        else:
            self._arms(stage, context, rows, state)
        interrupts.check()

    # -- stages ------------------------------------------------------------------------------

    def _search(self, stage: SearchStage, context: FoldContext, rows: TrialRows, state: "_ExperimentState") -> None:
        import optuna

        from heartbeatai.study.optuna_storage import fold_storage
        from heartbeatai.study.search_space import optuna_space

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = state.sampler(stage.sampler_seed)
        study = optuna.create_study(
            study_name=stage.optuna_study_name(context),
            storage=fold_storage(stage.optuna_storage, context.fold_id), load_if_exists=True,
            sampler=sampler,
            direction="maximize" if context.mode == "max" else "minimize",
        )
        space = optuna_space(dict(stage.space))
        asha = None
        if stage.asha:
            max_t = context.epochs
            asha = _SuccessiveHalving(max_t, min(stage.grace_period, max_t), stage.reduction_factor,
                                      1.0 if context.mode == "max" else -1.0, state.rungs)

        def tell(number: int, last: dict[str, Any] | None) -> None:
            value = None if last is None else last.get(context.metric)
            if value is None:
                study.tell(number, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(number, float(value))
            state.keep_sampler(sampler)

        for trial_id, paused in list(state.paused.items()):  # Tuner.restore resumes these first
            trial = state.trial(trial_id)
            tell(paused["optuna"], self._train(trial, context, rows, state, asha, optuna_number=paused["optuna"]))
        while len(state.finished) < stage.trials:
            interrupts.check()  # Tune starts no trial once stopped
            asked = study.ask(space)
            trial = state.new_trial(stage.name, context, dict(asked.params))
            state.keep_sampler(sampler)  # Tune's searcher state, saved with the experiment's
            tell(asked.number, self._train(trial, context, rows, state, asha, optuna_number=asked.number))

    def _arms(self, stage: ArmsStage, context: FoldContext, rows: TrialRows, state: "_ExperimentState") -> None:
        # Restored first: paused trials, then errored ones (resume_errored), from their checkpoints.
        for trial_id in [*state.paused, *state.errors]:
            state.reopen(trial_id)
            self._train(state.trial(trial_id), context, rows, state, None)
        done = [state.configs[t] for t in state.finished]
        for config in stage.trial_configs():
            if config not in done:
                interrupts.check()
                self._train(state.new_trial(stage.name, context, config), context, rows, state, None)

    # -- one trial ---------------------------------------------------------------------------

    def _train(self, trial: TrialRef, context: FoldContext, rows: TrialRows, state: "_ExperimentState",
               asha: "_SuccessiveHalving | None", optuna_number: int | None = None) -> dict[str, Any] | None:
        """Train one trial to its end (resuming its last checkpoint); its last result, or None when it errored."""
        index = len(self.trials_started)
        self.trials_started.append(trial.trial_id)
        resume = state.last_checkpoint(trial.trial_id)
        state.paused.pop(trial.trial_id, None)
        rows.started(trial)
        history = state.results.setdefault(trial.trial_id, [])
        last: dict[str, Any] = dict(history[-1]) if history else {}

        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            last.clear()
            last.update(metrics)
            history.append(dict(metrics))
            rows.result(trial, metrics)
            if checkpoint_dir is not None:
                kept = _checkpoint_path(trial, int(metrics["epoch"]))
                shutil.copytree(checkpoint_dir, kept, dirs_exist_ok=True)
                rows.checkpoint(trial, str(kept))
            self.epochs_reported += 1
            if self.kill_after_epochs is not None and self.epochs_reported >= self.kill_after_epochs:
                raise DriverKilled(f"killed after {self.epochs_reported} epochs, in trial {trial.trial_id}")
            if self.interrupt_after_epochs is not None and self.epochs_reported == self.interrupt_after_epochs:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the driver's handler records it
            if asha is not None and asha.stops(trial.trial_id, int(metrics["epoch"]), metrics.get(context.metric)):
                raise _EarlyStopped
            if interrupts.interrupted() is not None and int(metrics["epoch"]) < context.epochs:
                raise _Paused

        try:
            if index in self.erroring_trials:
                raise RuntimeError(f"trial {trial.trial_id} fails (FakeStageRunner erroring_trials)")
            self.train(context.trial_config(trial.config), context, report, resume)
        except _EarlyStopped:
            pass
        except _Paused:
            state.pause(trial.trial_id, optuna_number)
            raise interrupts.StudyInterrupted(interrupts.interrupted()) from None
        except DriverKilled:
            raise
        except Exception:
            error = traceback.format_exc()[-2000:]
            state.finish(trial.trial_id, error)
            rows.errored(trial, error, finished=len(state.finished))
            return None
        state.finish(trial.trial_id)
        rows.finished(trial, finished=len(state.finished), last_result=last)
        return last


def _checkpoint_path(trial: TrialRef, epoch: int) -> Path:
    return Path(trial.path) / f"checkpoint_{epoch:06d}"


class _ExperimentState:
    """The stage's trials (id -> stage config, reported results), which finished (and which of
    those errored), which are paused, ASHA's rungs and the next trial id; on disk, rewritten
    when a trial starts, pauses or finishes."""

    def __init__(self, folder: Path):
        self.folder = folder
        path = folder / STATE_FILE
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.configs: dict[str, dict[str, Any]] = saved.get("configs", {})
        self.finished: list[str] = saved.get("finished", [])
        self.errors: dict[str, str] = saved.get("errors", {})
        self.paused: dict[str, dict[str, Any]] = saved.get("paused", {})
        self.results: dict[str, list[dict[str, Any]]] = saved.get("results", {})
        self.rungs: dict[str, dict[str, float]] = saved.get("rungs", {})
        self.next_index: int = saved.get("next_index", 0)

    def new_trial(self, stage: str, context: FoldContext, config: Mapping[str, Any]) -> TrialRef:
        # Unique within the study, like Tune's ids: the fold and stage are part of it.
        trial_id = f"{context.fold_id.replace(':', '_')}-{stage}_{self.next_index:05d}"
        self.next_index += 1
        self.configs[trial_id] = dict(config)
        (self.folder / trial_id).mkdir(parents=True, exist_ok=True)
        self._save()  # the id is spent even if the driver dies in this trial
        return self.trial(trial_id)

    def sampler(self, seed: int):
        """The search's TPE sampler as last kept (its random state included), or a new one."""
        import optuna

        path = self.folder / SAMPLER_FILE
        return pickle.loads(path.read_bytes()) if path.is_file() else optuna.samplers.TPESampler(seed=seed)

    def keep_sampler(self, sampler) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{SAMPLER_FILE}.tmp"
        tmp.write_bytes(pickle.dumps(sampler))
        os.replace(tmp, self.folder / SAMPLER_FILE)

    def trial(self, trial_id: str) -> TrialRef:
        return TrialRef(trial_id, dict(self.configs[trial_id]), str(self.folder / trial_id))

    def last_checkpoint(self, trial_id: str) -> Path | None:
        results = self.results.get(trial_id) or []
        return _checkpoint_path(self.trial(trial_id), int(results[-1]["epoch"])) if results else None

    def pause(self, trial_id: str, optuna_number: int | None) -> None:
        self.paused[trial_id] = {"optuna": optuna_number}
        self._save()

    def reopen(self, trial_id: str) -> None:
        """An errored trial Tune restarts (resume_errored): no longer finished."""
        if trial_id in self.errors:
            self.errors.pop(trial_id)
            self.finished.remove(trial_id)

    def finish(self, trial_id: str, error: str | None = None) -> None:
        self.finished.append(trial_id)
        if error is not None:
            self.errors[trial_id] = error
        self._save()

    def replay(self, rows: TrialRows) -> None:
        """Tell `rows` every finished trial from these records (written only where the store lacks it)."""
        for trial_id in self.finished:
            trial = self.trial(trial_id)
            results = self.results.get(trial_id, [])
            checkpoints = [(str(_checkpoint_path(trial, int(r["epoch"]))), r) for r in results]
            rows.replay(trial, results, checkpoints, error=self.errors.get(trial_id))

    def _save(self) -> None:
        # Only a finished or paused trial's results are recorded, as Tune's snapshot of a trial
        # the driver was killed in may not have it yet (the trial is then run again).
        recorded = set(self.finished) | set(self.paused)
        state = {"configs": {t: c for t, c in self.configs.items() if t in recorded},
                 "finished": self.finished, "errors": self.errors, "paused": self.paused,
                 "results": {t: r for t, r in self.results.items() if t in recorded},
                 "rungs": self.rungs, "next_index": self.next_index}
        tmp = self.folder / f".{STATE_FILE}.tmp"
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.folder / STATE_FILE)


class _SuccessiveHalving:
    """ASHA's rule as Ray's `_Bracket` applies it (one bracket): at each rung (grace, grace x eta,
    ... below max_t) a trial stops when its signed value is below the (1 - 1/eta) quantile of
    the values recorded at that rung before it; the first trial at a rung always continues."""

    def __init__(self, max_t: int, grace: int, eta: float, sign: float, rungs: dict[str, dict[str, float]]):
        count = int(np.log(max_t / grace) / np.log(eta) + 1)
        self.max_t, self.eta, self.sign = max_t, eta, sign
        self.milestones = [grace * eta ** k for k in reversed(range(count))]
        self.rungs = rungs  # milestone -> {trial id: signed value}

    def stops(self, trial_id: str, epoch: int, value: float | None) -> bool:
        if epoch >= self.max_t:
            return False  # the trial ends here anyway, completed
        for milestone in self.milestones:
            recorded = self.rungs.setdefault(str(milestone), {})
            if epoch < milestone or trial_id in recorded:
                continue
            stop = False
            if value is not None:
                signed = self.sign * float(value)
                stop = bool(recorded) and signed < np.nanpercentile(list(recorded.values()), (1 - 1 / self.eta) * 100)
                recorded[trial_id] = signed
            return stop
        return False
