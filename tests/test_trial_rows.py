"""The trials and epochs rows a stage writes, whoever runs its trials (Tune or the fake)."""

from __future__ import annotations

import pandas as pd
import pytest

from heartbeatai.metric_names import EPOCH_COLUMNS, VALIDATION_METRICS, metric_mode
from heartbeatai.results import ResultsStore
from heartbeatai.study.selection import config_of_row
from heartbeatai.study.stage_runner import FoldContext
from heartbeatai.study.trial_rows import TrialRef, TrialRows
from train_fixtures import CLASSES, FOLD, tiny_trial

EPOCHS = 3


def _rows(tmp_path, metric: str = "val_macro_auroc", stage_arm: str | None = "search") -> TrialRows:
    context = FoldContext(
        study="rows", protocol="lodo", fold_id=FOLD, data_path=str(tmp_path / "data"), classes=CLASSES,
        base_trial=tiny_trial(**{"optim.epochs": EPOCHS}), metric=metric,
        mode=metric_mode(metric), arm_overrides={"no-se": {"model.se": False}},
    )
    return TrialRows(context, str(tmp_path / "rows"), stage_arm=stage_arm,
                     selection="search" if stage_arm else "val", progress=lambda _: None)


def _report(rows: TrialRows, trial: TrialRef, values: list[float], metric: str) -> None:
    rows.started(trial)
    for epoch, value in enumerate(values, start=1):
        result = {c: 0.5 for c in EPOCH_COLUMNS} | {"epoch": epoch, metric: value}
        rows.result(trial, result)
        rows.checkpoint(trial, f"/ckpt/{trial.trial_id}/{epoch}")


def _latest(tmp_path) -> pd.DataFrame:
    return ResultsStore(str(tmp_path)).read("rows", "trials").drop_duplicates("trial_id", keep="last")


@pytest.mark.parametrize("metric", list(VALIDATION_METRICS))
def test_a_trial_keeps_its_best_checkpoint_in_the_metrics_direction(tmp_path, metric):
    rows = _rows(tmp_path, metric)
    trial = TrialRef("t1", {"mixstyle.p": 0.25})
    _report(rows, trial, [0.3, 0.1, 0.2], metric)
    assert rows.finished(trial, finished=1) == "completed"
    row = _latest(tmp_path).iloc[0]
    best_epoch = 1 if metric_mode(metric) == "max" else 2
    assert row["best_epoch"] == best_epoch and row["checkpoint_path"] == f"/ckpt/t1/{best_epoch}"
    assert row["selection_value"] == pytest.approx([0.3, 0.1][best_epoch - 1])
    assert row[metric] == pytest.approx(0.2)  # the validation columns are the last epoch's


def test_a_trial_that_ends_before_its_budget_is_early_stopped(tmp_path):
    rows = _rows(tmp_path)
    trial = TrialRef("t1", {})
    _report(rows, trial, [0.6], "val_macro_auroc")
    assert rows.finished(trial, finished=1) == "early_stopped"
    row = _latest(tmp_path).iloc[0]
    assert row["status"] == "early_stopped" and row["epochs_run"] == 1 and row["checkpoint_path"] == "/ckpt/t1/1"


def test_the_cfg_columns_read_back_as_the_configuration_the_trial_ran(tmp_path):
    rows = _rows(tmp_path, stage_arm=None)
    trial = TrialRef("a1", {"arm": "no-se", "seed": 7, "mixstyle.p": 0.25})
    rows.started(trial)
    row = _latest(tmp_path).iloc[0]
    assert (row["arm"], row["seed"], row["selection"], row["status"]) == ("no-se", 7, "val", "running")
    ran = config_of_row(row, tiny_trial(**{"optim.epochs": EPOCHS}))
    assert ran == rows.context.trial_config(trial.config)
    assert not ran.model.se and ran.seed == 7 and ran.mixstyle.p == 0.25


def test_every_report_reaches_the_store_at_once_with_the_best_checkpoint_so_far(tmp_path):
    rows = _rows(tmp_path)
    trial = TrialRef("t1", {})
    _report(rows, trial, [0.3, 0.5, 0.4], "val_macro_auroc")
    store = ResultsStore(str(tmp_path))
    epochs = store.read("rows", "epochs")  # no flush: a killed driver loses no report
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert {c for c in EPOCH_COLUMNS if c not in ("val_classes_used", "epoch_seconds", "precision")} <= set(epochs.columns)
    row = _latest(tmp_path).iloc[0]
    assert (row["status"], row["best_epoch"], row["checkpoint_path"], row["epochs_run"]) == ("running", 2,
                                                                                          "/ckpt/t1/2", 3)
    rows.errored(trial, "Traceback ...\nValueError: boom", finished=1)
    row = _latest(tmp_path).iloc[0]
    assert row["status"] == "errored" and row["error"].endswith("ValueError: boom")


def test_rows_of_a_resumed_stage_keep_the_best_checkpoint_and_wall_time_of_the_killed_driver(tmp_path, monkeypatch):
    from heartbeatai.study import trial_rows

    clock = [1000.0]
    monkeypatch.setattr(trial_rows.time, "time", lambda: clock[0])
    first = _rows(tmp_path)
    trial = TrialRef("t1", {})
    first.started(trial)
    clock[0] += 30
    _report(first, trial, [0.7, 0.2], "val_macro_auroc")  # then the driver dies
    clock[0] += 500  # down for a while: not the trial's time

    resumed = _rows(tmp_path)  # a new driver; Tune restores the trial from its epoch-2 checkpoint
    resumed.started(trial)
    clock[0] += 10
    resumed.result(trial, {c: 0.5 for c in EPOCH_COLUMNS} | {"epoch": 3, "val_macro_auroc": 0.6})
    resumed.checkpoint(trial, "/ckpt/t1/3")
    assert resumed.finished(trial, finished=1) == "completed"

    row = _latest(tmp_path).iloc[0]
    assert (row["best_epoch"], row["checkpoint_path"]) == (1, "/ckpt/t1/1")  # epoch 1 still the best
    assert row["selection_value"] == pytest.approx(0.7)
    assert row["wall_time_s"] == pytest.approx(40.0)
    assert list(ResultsStore(str(tmp_path)).read("rows", "epochs")["epoch"]) == [1, 2, 3]


def test_a_replayed_trial_is_written_only_when_the_store_lacks_it(tmp_path):
    rows = _rows(tmp_path)
    trial = TrialRef("t1", {})
    results = [{c: 0.5 for c in EPOCH_COLUMNS} | {"epoch": e, "val_macro_auroc": v}
               for e, v in ((1, 0.4), (2, 0.6), (3, 0.5))]
    checkpoints = [("/ckpt/t1/2", results[1]), ("/ckpt/t1/3", results[2])]  # what Ray kept: best and latest
    assert rows.replay(trial, results, checkpoints, wall_time_s=12.0)
    row = _latest(tmp_path).iloc[0]
    assert (row["status"], row["best_epoch"], row["checkpoint_path"]) == ("completed", 2, "/ckpt/t1/2")
    assert row["wall_time_s"] == pytest.approx(12.0, abs=1.0)
    assert not _rows(tmp_path).replay(trial, results, checkpoints)  # already there
    assert list(ResultsStore(str(tmp_path)).read("rows", "epochs")["epoch"]) == [1, 2, 3]
