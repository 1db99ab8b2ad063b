"""`study run` prints the study's own progress: a line per finished trial, not Ray Tune's tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from heartbeatai.study.resources import TrialResources
from heartbeatai.study.study_config import dump_study_config
from heartbeatai.study.tune_runner import FoldContext, TrialRecorder
from study_fixtures import tiny_study
from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset

HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))
TUNE_CHATTER = ("View detailed results here", "To visualize your results with TensorBoard",
                "Configuration for experiment", "Trial status", "╭", "│")


def test_an_errored_trial_says_its_error_on_the_progress_line(tmp_path):
    context = FoldContext(
        study="console", protocol="lodo", fold_id=FOLD, data_path=str(tmp_path), classes=CLASSES,
        base_trial=tiny_trial().model_dump(mode="json"), metric="val_macro_auroc", mode="max",
        resources=TrialResources(workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0),
        train_storage=str(tmp_path / "train"), max_failures=0,
    )
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    said: list[str] = []
    recorder = TrialRecorder(context, str(tmp_path / "console"), stage_arm="search", selection="search",
                             progress=said.append)
    trial = SimpleNamespace(trial_id="t1", config={}, path=str(tmp_path), error_file=str(error_file),
                            status="ERROR", last_result={})
    recorder.on_trial_start(0, [trial], trial)
    recorder.on_trial_error(0, [trial], trial)
    assert len(said) == 1
    assert said[0].startswith(f"[{FOLD}] trial t1 errored") and "RuntimeError: CUDA out of memory" in said[0]


@pytest.mark.ray
def test_study_run_prints_a_line_per_finished_trial_and_none_of_tunes_tables(tmp_path):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config_file = tmp_path / "study.yaml"
    config_file.write_text(dump_study_config(tiny_study(data, tmp_path / "runs", name="console")))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AIR_NEW_OUTPUT", None)
    run = subprocess.run([HEARTBEATAI, "study", "run", str(config_file)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    for chatter in TUNE_CHATTER:
        assert chatter not in run.stdout, f"Tune's {chatter!r} in the study's output:\n{run.stdout}"
    search = re.findall(rf"^\[{FOLD}\] trial \S+ (?:completed|early_stopped) after \d+ s "
                        r"\(\d+ finished\): val_macro_auroc = [\d.]+", run.stdout, re.MULTILINE)
    arms = re.findall(rf"^\[{FOLD}\] full seed 0 \S+ completed after \d+ s", run.stdout, re.MULTILINE)
    assert len(search) == 2 and len(arms) == 1, run.stdout
    assert f"[{FOLD}] search: 2 trials" in run.stdout and "study console finished" in run.stdout
