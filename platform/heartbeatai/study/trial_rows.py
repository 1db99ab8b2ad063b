"""The trials and epochs rows of one stage, as its trials start, report, finish or fail.

Whatever runs the trials (Ray Tune through tune_runner's callback, or the in-process fake
of heartbeatai.testing) tells a `TrialRows` what happened and this module alone decides
what the store holds: the run key, the status (a trial that stopped before its full budget
was early-stopped, by ASHA), the `cfg.<dotted>` columns, and the best checkpoint by the
selection metric, which is what the fold runner later selects and tests.

Rows reach the store at every report (the epoch's row, and the trial's row with its best
checkpoint so far), so a killed driver loses nothing a trial reported. A TrialRows made for a
stage the store already holds rows of (a resumed study) takes its trials' best checkpoints,
last results and wall times from those rows: a trial Tune restores from its checkpoint keeps
its earlier best, and its wall time counts on from where the killed driver left it. A runner
re-tells its finished trials from its own records (`replay`), which restores rows a damaged
store lost.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from heartbeatai.config import flatten_config
from heartbeatai.metric_names import VALIDATION_METRICS
from heartbeatai.results import ResultsStore, ResultsWriter
from heartbeatai.results.schema import COMPLETED, EARLY_STOPPED, ERRORED, FINISHED_STATUSES, RUN_KEY, RUNNING, RunKey
from heartbeatai.results.schema import table as results_table
from heartbeatai.study.stage_runner import ARM_KEY, SEED_KEY, FoldContext

# The epochs table's own columns (beyond the run key), as the schema declares them.
EPOCH_TABLE_COLUMNS = tuple(c for c in results_table("epochs").columns if c not in RUN_KEY)


@dataclass(frozen=True)
class TrialRef:
    """One trial as its runner knows it: id, its stage config (sampled values, arm, seed), folder."""

    trial_id: str
    config: Mapping[str, Any]
    path: str | None = None  # the trial's own folder, kept as provenance


class TrialRows:
    """Writes the trials and epochs tables of one stage of one fold.

    `stage_arm` is "search" for the search (every trial keyed arm=search), None for the arms
    stage (each trial keyed by its own arm). Says one line per finished trial through
    ``progress``: Tune's own tables are off, so a long stage shows its progress here.
    """

    def __init__(self, context: FoldContext, study_dir: str, stage_arm: str | None, selection: str,
                 progress: Callable[[str], None] | None = None):
        self.context = context
        self.study_dir = study_dir
        self.stage_arm = stage_arm
        self.selection = selection
        self.progress = progress
        self._writer: ResultsWriter | None = None
        self._last: dict[str, dict[str, Any]] = {}  # latest result per trial
        self._best: dict[str, tuple[float, int, str | None]] = {}  # value, epoch, checkpoint
        self._elapsed: dict[str, float] = {}  # wall seconds of earlier drivers
        self._started: dict[str, float] = {}  # when this driver started the trial
        self._stored: dict[str, tuple[str, int]] = {}  # status, epoch rows in the store
        self._restore_from_store()

    # Ray pickles its callbacks, and so these rows, into the experiment state; the writer holds
    # a filesystem handle, and the progress callable may not pickle (restored rows print).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writer": None, "progress": None}

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(self.study_dir)
        return self._writer

    def key(self, trial: TrialRef) -> dict[str, Any]:
        cfg = trial.config
        return RunKey(
            study=self.context.study,
            protocol=self.context.protocol,
            fold_id=self.context.fold_id,
            arm=self.stage_arm or cfg[ARM_KEY],
            seed=int(cfg.get(SEED_KEY, self.context.base_trial.seed)),
            selection=self.selection,
            trial_id=trial.trial_id,
        ).as_dict()

    # -- what the runner tells ---------------------------------------------------------------

    def started(self, trial: TrialRef) -> None:
        self._started.setdefault(trial.trial_id, time.time())
        self._write_trial(trial, RUNNING)

    def restored(self, trial: TrialRef, last_result: Mapping[str, Any], checkpoint_path: str | None) -> None:
        """A trial resumed from its latest checkpoint; earlier ones are in its stored row."""
        if checkpoint_path is not None and last_result:
            self._offer(trial.trial_id, last_result, checkpoint_path)

    def result(self, trial: TrialRef, result: Mapping[str, Any]) -> None:
        """One epoch's report, written at once. A Ray Train run names its own persisted
        checkpoint in it; an in-process trial's checkpoint follows (`checkpoint`)."""
        if "epoch" not in result:
            return
        self._last[trial.trial_id] = dict(result)
        self._write_epochs(trial, [result])
        if "checkpoint_path" in result:
            self._offer(trial.trial_id, result, result["checkpoint_path"])
            self._write_trial(trial, RUNNING)

    def checkpoint(self, trial: TrialRef, path: str) -> None:
        """The persisted checkpoint of the trial's latest result."""
        last = self._last.get(trial.trial_id)
        if last is not None:
            self._offer(trial.trial_id, last, path)
            self._write_trial(trial, RUNNING)

    def finished(self, trial: TrialRef, finished: int, last_result: Mapping[str, Any] | None = None) -> str:
        """The trial ended without error; returns its status. `finished`: trials of the stage done, this one included."""
        status = self._status(trial, last_result)
        self._write_trial(trial, status)
        self._say_finished(trial, status, finished)
        return status

    def errored(self, trial: TrialRef, error: str, finished: int) -> None:
        self._write_trial(trial, ERRORED, error=error)
        self._say_finished(trial, ERRORED, finished, error)

    def replay(self, trial: TrialRef, results: Sequence[Mapping[str, Any]],
               checkpoints: Sequence[tuple[str, Mapping[str, Any]]] = (), error: str | None = None,
               wall_time_s: float | None = None) -> bool:
        """A finished trial re-told from its runner's own records (Tune's result log): written
        only when the store lacks its final row or some of its epochs. Returns whether it was."""
        epochs = {int(r["epoch"]): dict(r) for r in results if pd.notna(r.get("epoch"))}
        status, stored_epochs = self._stored.get(trial.trial_id, (None, 0))
        if status in FINISHED_STATUSES and stored_epochs >= len(epochs):
            return False
        ordered = [epochs[e] for e in sorted(epochs)]
        self._best.pop(trial.trial_id, None)
        for result in ordered:
            if isinstance(result.get("checkpoint_path"), str):
                self._offer(trial.trial_id, result, result["checkpoint_path"])
        for path, metrics in checkpoints:
            self._offer(trial.trial_id, metrics, path)
        if ordered:
            self._last[trial.trial_id] = ordered[-1]
            self._write_epochs(trial, ordered)
        if wall_time_s is not None:
            self._elapsed[trial.trial_id], self._started[trial.trial_id] = float(wall_time_s), time.time()
        self._write_trial(trial, ERRORED if error is not None else self._status(trial, None), error=error)
        return True

    def history(self, metric: str) -> dict[str, list[tuple[int, float]]]:
        """(epoch, value of `metric`) of every trial of the stage the store holds, in epoch order:
        what a scheduler saw of them before a restore."""
        root, study = os.path.split(os.path.abspath(self.study_dir))
        if not os.path.isdir(os.path.join(self.study_dir, "results")):
            return {}
        epochs = ResultsStore(root).read(study, "epochs", filters=self._where())
        epochs = epochs.dropna(subset=[metric]).sort_values(["trial_id", "epoch"])
        return {trial_id: [(int(e), float(v)) for e, v in zip(rows["epoch"], rows[metric])]
                for trial_id, rows in epochs.groupby("trial_id")}

    def flush(self) -> None:
        """Nothing is buffered any more (rows are written at each report); kept for runners."""

    # -- internals ---------------------------------------------------------------------------

    def _say_finished(self, trial: TrialRef, status: str, finished: int, error: str | None = None) -> None:
        key = self.key(trial)
        who = "trial" if self.stage_arm else f"{key['arm']} seed {key['seed']}"
        value, best_epoch, _ = self._best.get(trial.trial_id, (None, None, None))
        if error is not None:
            outcome = error.strip().splitlines()[-1] if error.strip() else "failed"
        elif value is None:
            outcome = f"no {self.context.metric} reported"
        else:
            outcome = f"{self.context.metric} = {value:.4f} (epoch {best_epoch})"
        elapsed = self._wall_time(trial.trial_id)
        say = self.progress or print
        say(f"[{self.context.fold_id}] {who} {trial.trial_id} {status} after {elapsed:.0f} s "
            f"({finished} finished): {outcome}")

    def _offer(self, trial_id: str, result: Mapping[str, Any], path: str | None) -> None:
        value = result.get(self.context.metric)
        if value is None:
            return
        sign = 1.0 if self.context.mode == "max" else -1.0
        best = self._best.get(trial_id)
        # Ties go to the later checkpoint, as Ray's checkpoint manager breaks them: it keeps
        # the later of two equal scores and deletes the earlier one.
        if best is None or sign * value >= sign * best[0]:
            self._best[trial_id] = (float(value), int(result.get("epoch", 0)), path)

    def _status(self, trial: TrialRef, last_result: Mapping[str, Any] | None) -> str:
        epochs_run = int(self._last.get(trial.trial_id, last_result or {}).get("epoch", 0))
        planned = self.context.trial_config(trial.config).optim.epochs
        return COMPLETED if epochs_run >= planned else EARLY_STOPPED

    def _wall_time(self, trial_id: str) -> float:
        started = self._started.get(trial_id)
        return self._elapsed.get(trial_id, 0.0) + (time.time() - started if started is not None else 0.0)

    def _write_epochs(self, trial: TrialRef, results: Sequence[Mapping[str, Any]]) -> None:
        key = self.key(trial)
        self.writer.write("epochs", pd.DataFrame([{**key, **{k: r.get(k) for k in EPOCH_TABLE_COLUMNS}}
                                                  for r in results]))

    def _write_trial(self, trial: TrialRef, status: str, error: str | None = None) -> None:
        cfg = self.context.trial_config(trial.config)
        last = self._last.get(trial.trial_id, {})
        value, best_epoch, checkpoint = self._best.get(trial.trial_id, (None, None, None))
        row = {
            **self.key(trial),
            "status": status,
            "error": error,
            "best_epoch": best_epoch,
            "epochs_run": int(last.get("epoch", 0)),
            "wall_time_s": self._wall_time(trial.trial_id),
            **{m: last.get(m) for m in VALIDATION_METRICS},
            "selection_metric": self.context.metric,
            "selection_value": value,
            "checkpoint_path": checkpoint,
            "node_id": last.get("node_id"),
            "provenance": json.dumps({"tune_trial_dir": trial.path, "data_path": self.context.data_path,
                                      "precision": last.get("precision")}),
            **{f"cfg.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in flatten_config(cfg).items()},
        }
        self.writer.write("trials", pd.DataFrame([row]))
        self._stored[trial.trial_id] = (status, int(last.get("epoch", 0)))

    def _where(self) -> dict[str, Any]:
        where = {"protocol": self.context.protocol, "fold_id": self.context.fold_id, "selection": self.selection}
        if self.stage_arm:
            where["arm"] = self.stage_arm
        return where

    def _restore_from_store(self) -> None:
        """What earlier drivers recorded of this stage's trials: their rows are the memory."""
        root, study = os.path.split(os.path.abspath(self.study_dir))
        if not os.path.isdir(os.path.join(self.study_dir, "results")):
            return
        where = self._where()
        store = ResultsStore(root)
        trials = store.read(study, "trials", filters=where)
        epochs = store.read(study, "epochs", columns=["trial_id", "epoch"], filters=where)
        counts = epochs.groupby("trial_id")["epoch"].nunique().to_dict() if not epochs.empty else {}
        for row in trials.itertuples(index=False):
            row = row._asdict()
            trial_id = row["trial_id"]
            self._stored[trial_id] = (row["status"], int(counts.get(trial_id, 0)))
            if pd.notna(row["selection_value"]):
                epoch = int(row["best_epoch"]) if pd.notna(row["best_epoch"]) else 0
                path = row["checkpoint_path"] if isinstance(row["checkpoint_path"], str) else None
                self._best[trial_id] = (float(row["selection_value"]), epoch, path)
            if pd.notna(row["wall_time_s"]):
                self._elapsed[trial_id] = float(row["wall_time_s"])
            if pd.notna(row["epochs_run"]) and int(row["epochs_run"]) > 0:
                self._last[trial_id] = {"epoch": int(row["epochs_run"]),
                                        **{m: row[m] for m in VALIDATION_METRICS if pd.notna(row.get(m))}}
