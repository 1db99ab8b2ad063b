"""Multi-worker trials: each trial drives a Ray Train TorchTrainer (DDP on CPU) inside Tune."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from heartbeatai.results import ResultsStore
from heartbeatai.study.study_config import dump_study_config
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset

HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))


@pytest.mark.slow
@pytest.mark.ray
def test_consecutive_ddp_experiments_do_not_deadlock_on_leftover_workers(tmp_path):
    # Two workers of (2 - 0.01) / 2 CPUs fill the machine: the arms experiment can only start
    # its workers once the search trial's worker group has given its placement group back.
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config = tiny_study(data, tmp_path / "runs", name="ddp", search={"trials_per_fold": 1}, arms=["full"],
                        resources={"workers": 2})
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(dump_study_config(config))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run([HEARTBEATAI, "study", "run", str(config_file)], env=env, capture_output=True,
                         text=True, timeout=420)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    trials = ResultsStore(str(tmp_path / "runs")).read("ddp", "trials").drop_duplicates("trial_id", keep="last")
    assert set(trials["arm"]) == {"search", "full"} and set(trials["status"]) == {"completed"}
    # Ray Train runs report their own persisted checkpoints (TuneReportCallback's checkpoint_path).
    assert trials["checkpoint_path"].str.contains("/ray/train/").all()
