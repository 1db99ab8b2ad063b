"""SIGINT and SIGTERM stop a study at its next safe point; `study resume` completes it exactly.

The engine's policy against the in-process planted stage runner, which stops and resumes trials
as Tune does: signals sent to this very process, at each stage in turn (the real driver under
Ray, signalled and killed from outside, is in test_study_kills.py).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from heartbeatai.results import ResultsStore
from heartbeatai.study import fold_runner, record_views
from heartbeatai.study.interrupts import StudyInterrupted
from heartbeatai.study.study_run import resume_study, start_study
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import assert_same_tables, comparable_tables, tiny_study
from train_fixtures import write_planted_dataset

FOLD = "lodo:gamma"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=24)


def _config(data: Path, storage: Path, name: str):
    return tiny_study(data, storage, name=name, arms=["full", "no-se", "prevalence"],
                      selection={"oracle": True}, record_views=1, search={"trials_per_fold": 2, "reproducible": True})


def _journal(study_dir: Path) -> dict:
    path = study_dir / "journal.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _signal_on(fragment: str, signum: int):
    """Progress that sends this process `signum` on the first line holding `fragment`."""
    sent = []

    def say(message: str) -> None:
        print(message)
        if fragment in message and not sent:
            sent.append(message)
            os.kill(os.getpid(), signum)

    return say


def _finished_trials(store: ResultsStore, study: str) -> set[str]:
    trials = store.read(study, "trials").drop_duplicates("trial_id", keep="last")
    return set(trials.loc[trials["status"].isin(["completed", "early_stopped"]), "trial_id"])


def test_a_study_signalled_at_every_stage_resumes_to_the_tables_of_an_uninterrupted_run(planted, tmp_path,
                                                                                         monkeypatch):
    # One study name in two storages: the bootstrap seeds of its intervals hash the run key.
    straight = tmp_path / "straight"
    start_study(_config(planted, straight, "signalled"), progress=print, stage_runner=PlantedStageRunner(tmp_path / "f1"))
    storage = tmp_path / "runs"
    study_dir = storage / "signalled"
    store = ResultsStore(str(storage))
    fake = tmp_path / "f2"
    stops = []

    def stopped(run, stage: str, signum: int = signal.SIGINT) -> None:
        finished_before = _finished_trials(store, "signalled") if study_dir.exists() else set()
        runner = PlantedStageRunner(fake, **run.pop("fake", {}))
        with pytest.raises(StudyInterrupted) as caught:
            if study_dir.exists():
                resume_study(study_dir, stage_runner=runner, **run)
            else:
                start_study(_config(planted, storage, "signalled"), stage_runner=runner, **run)
        assert caught.value.exit_status == 128 + signum
        assert stage not in _journal(study_dir).get(FOLD, {}) | _journal(study_dir).get("study", {})
        assert not finished_before & set(runner.trials_started), "a finished trial ran again"
        stops.append(stage)

    # 1. Mid-way through the first search trial (its first epoch reported).
    stopped({"fake": {"interrupt_after_epochs": 1}}, "search")
    trials = store.read("signalled", "trials")
    assert set(trials["status"]) == {"running"}  # the paused trial is not finished, nor abandoned
    # 2. SIGTERM just after "arms:", the Ctrl-C: the search finished and was tested first.
    stopped({"progress": _signal_on("] arms:", signal.SIGTERM)}, "arms", signal.SIGTERM)
    assert {"search", "selection", "tested", "oracle"} <= set(_journal(study_dir)[FOLD])
    # 3. One epoch into the first arm run.
    stopped({"fake": {"interrupt_after_epochs": 1}}, "arms")
    # 4. While the record views are drawn: that stage finishes, and the study stops after it.
    draw = record_views.record_view_rows

    def drawn_then_signalled(*args, **kwargs):
        rows = draw(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return rows

    monkeypatch.setattr(record_views, "record_view_rows", drawn_then_signalled)
    stopped({}, "analysis")
    monkeypatch.setattr(record_views, "record_view_rows", draw)
    assert {"arms", "record_views"} <= set(_journal(study_dir)[FOLD])
    # 5. In the analysis, after its first line.
    stopped({"progress": _signal_on("analysis:", signal.SIGINT)}, "analysis")

    last = PlantedStageRunner(fake)
    resume_study(study_dir, progress=print, stage_runner=last)
    assert last.trials_started == [] and "analysis" in _journal(study_dir)["study"]
    assert len(stops) == 5
    assert_same_tables(comparable_tables(store, "signalled"),
                       comparable_tables(ResultsStore(str(straight)), "signalled"))


def test_an_errored_arm_run_is_retried_up_to_max_failures_then_reported(planted, tmp_path, capsys):
    storage = tmp_path / "runs"
    # Two search trials start first (0, 1), then full seed 1 (2, errors) and seed 2 (3); the retry is the fifth.
    retried = PlantedStageRunner(tmp_path / "f1", erroring_trials={2})
    start_study(tiny_study(planted, storage, name="retried", max_failures=1), progress=print, stage_runner=retried)
    store = ResultsStore(str(storage))
    full = store.read("retried", "trials", filters={"arm": "full", "seed": 1}).drop_duplicates("trial_id", keep="last")
    assert list(full["status"]) == ["completed"] and retried.trials_started.count(full["trial_id"].iloc[0]) == 2
    assert not store.read("retried", "fold_metrics", filters={"arm": "full", "seed": 1}).empty
    assert "retry 1 of 1" in capsys.readouterr().out

    failing = PlantedStageRunner(tmp_path / "f2", erroring_trials={2, 4})  # seed 1 fails, then its retry
    start_study(tiny_study(planted, storage, name="failing", max_failures=1), progress=print, stage_runner=failing)
    full = store.read("failing", "trials", filters={"arm": "full", "seed": 1}).drop_duplicates("trial_id", keep="last")
    assert list(full["status"]) == ["errored"]
    assert "errored 2 time(s); it is left untested" in capsys.readouterr().out
    assert _journal(storage / "failing")[FOLD]["arms"] == {"errored": list(full["trial_id"])}
    assert store.read("failing", "fold_metrics", filters={"arm": "full", "seed": 1}).empty
    assert not store.read("failing", "fold_metrics", filters={"arm": "full", "seed": 2}).empty
    assert fold_runner.ARM_RETRIES in _journal(storage / "failing")[FOLD]


def test_tunes_failed_state_save_during_an_interrupt_is_one_line_not_a_traceback():
    """Tune's experiment-state save can race its search generator's temporary file on an
    interrupt (its next save succeeds): the study shows one warning line, no traceback; the
    same record outside an interrupt is left as Tune wrote it."""
    import logging
    import os
    import signal
    import sys

    from heartbeatai.study import interrupts
    from heartbeatai.study.tune_runner import _TuneHints

    def record():
        try:
            raise FileNotFoundError("Failed to open local file '...-tmp-basic-variant'")
        except FileNotFoundError:
            return logging.LogRecord("ray.tune.execution.experiment_state", logging.ERROR, __file__, 1,
                                     "Saving experiment state to storage at '%s' failed with exception: ",
                                     ("/runs/x",), sys.exc_info())

    untouched = record()
    assert _TuneHints().filter(untouched) and untouched.exc_info is not None and untouched.levelno == logging.ERROR
    with interrupts.catching_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        shortened = record()
        assert _TuneHints().filter(shortened)
    assert shortened.exc_info is None and shortened.levelno == logging.WARNING
    assert "raced the interrupt" in shortened.getMessage() and "Traceback" not in logging.Formatter().format(shortened)
