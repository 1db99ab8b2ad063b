"""The trials and epochs rows of one stage, as its trials start, report, finish or fail.

Whatever runs the trials (Ray Tune through tune_runner's callback, or the in-process fake
of heartbeatai.testing) tells a `TrialRows` what happened and this module alone decides
what the store holds: the run key, the status (a trial that stopped before its full budget
was early-stopped, by ASHA), the `cfg.<dotted>` columns, and the best checkpoint by the
selection metric, which is what the fold runner later selects and tests.

Rows reach the store as trials run, so a study in progress is readable; epoch rows are
buffered for up to EPOCH_FLUSH_SECONDS, so a killed driver loses at most those.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

from heartbeatai.config import flatten_config
from heartbeatai.metric_names import VALIDATION_METRICS
from heartbeatai.results import ResultsWriter
from heartbeatai.results.schema import RUN_KEY, RunKey
from heartbeatai.results.schema import table as results_table
from heartbeatai.study.stage_runner import ARM_KEY, SEED_KEY, FoldContext

EPOCH_FLUSH_SECONDS = 20.0
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
        self._epochs: dict[str, list[dict[str, Any]]] = {}
        self._last: dict[str, dict[str, Any]] = {}  # latest result per trial
        self._best: dict[str, tuple[float, int, str | None]] = {}  # value, epoch, checkpoint
        self._started: dict[str, float] = {}
        self._last_flush = time.monotonic()

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
            seed=int(cfg.get(SEED_KEY, self.context.base_trial.get("seed", 0))),
            selection=self.selection,
            trial_id=trial.trial_id,
        ).as_dict()

    # -- what the runner tells ---------------------------------------------------------------

    def started(self, trial: TrialRef) -> None:
        self._started.setdefault(trial.trial_id, time.time())
        self._write_trial(trial, "running")

    def restored(self, trial: TrialRef, last_result: Mapping[str, Any], checkpoint_path: str | None) -> None:
        """A trial resumed from its latest checkpoint; earlier ones are known only to its runner."""
        if checkpoint_path is not None and last_result:
            self._offer(trial.trial_id, last_result, checkpoint_path)

    def result(self, trial: TrialRef, result: Mapping[str, Any]) -> None:
        """One epoch's report. A Ray Train run names its own persisted checkpoint in it."""
        if "epoch" not in result:
            return
        self._last[trial.trial_id] = dict(result)
        self._epochs.setdefault(trial.trial_id, []).append(
            {**self.key(trial), **{k: result.get(k) for k in EPOCH_TABLE_COLUMNS}}
        )
        if "checkpoint_path" in result:
            self._offer(trial.trial_id, result, result["checkpoint_path"])
        if time.monotonic() - self._last_flush > EPOCH_FLUSH_SECONDS:
            self.flush()

    def checkpoint(self, trial: TrialRef, path: str) -> None:
        """The persisted checkpoint of the trial's latest result."""
        last = self._last.get(trial.trial_id)
        if last is not None:
            self._offer(trial.trial_id, last, path)

    def finished(self, trial: TrialRef, finished: int, last_result: Mapping[str, Any] | None = None) -> str:
        """The trial ended without error; returns its status. `finished`: trials of the stage done, this one included."""
        epochs_run = int(self._last.get(trial.trial_id, last_result or {}).get("epoch", 0))
        planned = self.context.trial_config(trial.config).optim.epochs
        status = "completed" if epochs_run >= planned else "early_stopped"
        self._write_trial(trial, status)
        self._say_finished(trial, status, finished)
        return status

    def errored(self, trial: TrialRef, error: str, finished: int) -> None:
        self._write_trial(trial, "errored", error=error)
        self._say_finished(trial, "errored", finished, error)

    def flush(self) -> None:
        rows = [row for buffered in self._epochs.values() for row in buffered]
        self._epochs.clear()
        self._last_flush = time.monotonic()
        if rows:
            self.writer.write("epochs", pd.DataFrame(rows))

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
        # Ties go to the later checkpoint, as Ray's checkpoint manager breaks them: it keeps
        # the later of two equal scores and deletes the earlier one.
        if best is None or sign * value >= sign * best[0]:
            self._best[trial_id] = (float(value), int(result.get("epoch", 0)), path)

    def _write_trial(self, trial: TrialRef, status: str, error: str | None = None) -> None:
        if status != "running":
            self.flush()
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
