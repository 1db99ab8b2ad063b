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
    assert said.index(f"fold 1 of 1: {FOLD}") < said.index(f"[{FOLD}] search: 2 trials, 1 at a time")


def test_progress_lines_carry_the_time_since_the_command_started_and_the_folds_time_left():
    from heartbeatai.console import elapsed_text, stamped_printer
    import io

    now = [100.0]
    stream = io.StringIO()
    say = stamped_printer(stream, clock=lambda: now[0])
    say("first")
    now[0] += 3725.4
    say("later")
    assert stream.getvalue().splitlines() == ["[0:00:00] first", "[1:02:05] later"]
    assert [elapsed_text(s) for s in (42, 600, 3900)] == ["42 s", "10 min", "1 h 05 min"]


def test_from_the_second_fold_on_a_study_says_about_how_long_it_has_left(tmp_path, monkeypatch):
    import heartbeatai.study.study_run as study_run

    monkeypatch.setattr(study_run, "_DID_WORK_S", 0.0)  # the planted runner's folds take well under a second
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    said: list[str] = []
    start_study(tiny_study(data, tmp_path / "runs", name="eta", folds={"domains": ["beta", "gamma"]}),
                progress=said.append, stage_runner=PlantedStageRunner(tmp_path / "fake"))
    folds = [line for line in said if line.startswith("fold ")]
    assert len(folds) == 2 and folds[0] == "fold 1 of 2: lodo:beta", folds
    assert re.fullmatch(r"fold 2 of 2: lodo:gamma; about \d+ s left", folds[1]), folds
