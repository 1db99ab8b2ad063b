"""A study prints its own progress: a line per finished trial, with its outcome or its error.

The lines come from TrialRows whatever runs the trials; that Ray Tune's own tables stay off
the console is checked by the smoke test, which runs the real `study run`.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from heartbeatai.study.stage_runner import FoldContext
from heartbeatai.study.study_run import start_study
from heartbeatai.study.trial_rows import TrialRows
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import tiny_study
from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset


def test_an_errored_tune_trial_says_its_error_on_the_progress_line(tmp_path):
    from heartbeatai.study.tune_runner import TrialRowsCallback

    context = FoldContext(
        study="console", protocol="lodo", fold_id=FOLD, data_path=str(tmp_path), classes=CLASSES,
        base_trial=tiny_trial(), metric="val_macro_auroc", mode="max",
    )
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    said: list[str] = []
    callback = TrialRowsCallback(TrialRows(context, str(tmp_path / "console"), stage_arm="search",
                                           selection="search", progress=said.append))
    trial = SimpleNamespace(trial_id="t1", config={}, path=str(tmp_path), error_file=str(error_file),
                            status="ERROR", last_result={})
    callback.on_trial_start(0, [trial], trial)
    callback.on_trial_error(0, [trial], trial)
    assert len(said) == 1
    assert said[0].startswith(f"[{FOLD}] trial t1 errored") and "RuntimeError: CUDA out of memory" in said[0]


def test_a_study_says_a_line_per_finished_trial_of_each_stage(tmp_path):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    said: list[str] = []
    start_study(tiny_study(data, tmp_path / "runs", name="console"), progress=said.append,
                stage_runner=PlantedStageRunner(tmp_path / "fake", erroring_trials={1}))
    out = "\n".join(said)
    search = re.findall(rf"^\[{FOLD}\] trial \S+ (?:completed|early_stopped) after \d+ s "
                        r"\(1 finished\): val_macro_auroc = [\d.]+ \(epoch \d\)$", out, re.MULTILINE)
    errored = re.findall(rf"^\[{FOLD}\] trial \S+ errored after \d+ s \(2 finished\): RuntimeError: .*fails",
                         out, re.MULTILINE)
    arms = re.findall(rf"^\[{FOLD}\] full seed 1 \S+ completed after \d+ s \(1 finished\)", out, re.MULTILINE)
    assert len(search) == 1 and len(errored) == 1 and len(arms) == 1, out
    assert f"[{FOLD}] search: 2 trials, 1 at a time" in out and "study console finished" in out
