"""A killed study driver loses nothing that finished: `study resume` completes it without rerunning done work.

The policy runs against the in-process planted stage runner, which stands in for a killed
driver by raising mid-stage; the first test kills the driver inside a real training loop (the
training fake), and one slow test kills a real driver and its Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from heartbeatai import processes
from heartbeatai.cli import main
from heartbeatai.results import ResultsStore
from heartbeatai.study.lock import StudyLock
from heartbeatai.study.study_config import dump_study_config
from heartbeatai.study.study_run import resume_study, start_study
from heartbeatai.study.tune_runner import TuneStageRunner
from heartbeatai.testing.fake_stage_runner import DriverKilled, FakeStageRunner
from heartbeatai.testing.planted_stage_runner import PlantedStageRunner
from study_fixtures import one_torch_thread, tiny_study
from train_fixtures import write_planted_dataset

# The console script: `python -m heartbeatai.cli` would load the CLI module twice (as __main__).
HEARTBEATAI = [str(Path(sys.executable).with_name("heartbeatai"))]
EPOCHS = 2  # tiny_trial's budget


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=24)


def _latest(store: ResultsStore, study: str, **where) -> pd.DataFrame:
    return store.read(study, "trials", filters=where or None).drop_duplicates("trial_id", keep="last")


def _finished_search_trials(store: ResultsStore, study: str) -> set[str]:
    latest = _latest(store, study, arm="search")
    return set(latest.loc[latest["status"].isin(["completed", "early_stopped"]), "trial_id"])


def _journal(study_dir: Path) -> dict:
    return json.loads((study_dir / "journal.json").read_text())


def test_a_driver_killed_mid_search_resumes_without_rerunning_finished_trials(planted, tmp_path):
    one_torch_thread()
    storage = tmp_path / "runs"
    config = tiny_study(planted, storage, name="killed-search", scheduler={"kind": "none"}, seeds=[1])
    store = ResultsStore(str(storage))
    # Killed one epoch into the second search trial: the first is finished, the second running.
    with pytest.raises(DriverKilled):
        start_study(config, progress=print, stage_runner=FakeStageRunner(tmp_path / "fake", kill_after_epochs=EPOCHS + 1))
    study_dir = storage / "killed-search"
    assert "search" not in _journal(study_dir).get("lodo:gamma", {})
    done_before = _finished_search_trials(store, "killed-search")
    assert len(done_before) == 1
    assert set(_latest(store, "killed-search", arm="search")["status"]) == {"completed", "running"}
    epochs_before = store.read("killed-search", "epochs", filters={"trial_id": sorted(done_before)})
    assert len(epochs_before) == EPOCHS

    resumed = FakeStageRunner(tmp_path / "fake")
    resume_study(study_dir, progress=print, stage_runner=resumed)

    assert {"search", "selection", "tested", "arms"} <= set(_journal(study_dir)["lodo:gamma"])
    search = _latest(store, "killed-search", arm="search")
    finished = search[search["status"].isin(["completed", "early_stopped"])]
    assert len(finished) == 2 and done_before <= set(finished["trial_id"])
    # The trial the killed driver was in is closed, not left running; its configuration ran anew.
    assert set(search["status"]) == {"completed", "errored"}
    assert search.loc[search["status"] == "errored", "error"].str.startswith("abandoned").all()
    assert not done_before & set(resumed.trials_started)
    # Finished trials were not run again: their epoch rows are the ones written before the kill.
    epochs_after = store.read("killed-search", "epochs", filters={"trial_id": sorted(done_before)})
    assert len(epochs_after) == len(epochs_before)
    tested = store.read("killed-search", "fold_metrics", filters={"split": "test", "metric": "macro_auroc"})
    assert {"full", "prevalence", "search"} <= set(tested["arm"])


def test_a_driver_killed_in_the_arms_stage_reruns_only_that_stage(planted, tmp_path):
    storage = tmp_path / "runs"
    config = tiny_study(planted, storage, name="killed-arms", arms=["full", "no-se", "prevalence"])
    # Two search trials of up to two epochs, then killed one epoch into the first arm.
    first = PlantedStageRunner(tmp_path / "fake", kill_after_epochs=5)
    with pytest.raises(DriverKilled):
        start_study(config, progress=print, stage_runner=first)
    study_dir = storage / "killed-arms"
    stages = _journal(study_dir)["lodo:gamma"]
    assert {"search", "selection", "tested"} <= set(stages) and "arms" not in stages
    store = ResultsStore(str(storage))
    search_rows = store.read("killed-arms", "trials", filters={"arm": "search"})

    resumed = PlantedStageRunner(tmp_path / "fake")
    resume_study(study_dir, progress=print, stage_runner=resumed)

    assert "arms" in _journal(study_dir)["lodo:gamma"]
    assert all("-arms_" in trial_id for trial_id in resumed.trials_started), "the finished search ran again"
    assert store.read("killed-arms", "trials", filters={"arm": "search"}).shape == search_rows.shape
    arms = _latest(store, "killed-arms", selection="val")
    assert set(arms.loc[arms["status"] == "completed", "arm"]) == {"full", "no-se"}
    tested = store.read("killed-arms", "fold_metrics", filters={"split": "test", "metric": "macro_auroc"})
    assert {"full", "no-se", "prevalence"} <= set(tested["arm"])
    # The killed driver's trial is not tested: it has no finished checkpoint.
    abandoned = arms.loc[arms["status"] == "errored", "trial_id"]
    assert len(abandoned) == 1 and not set(abandoned) & set(tested["trial_id"])


def test_a_finished_study_resumes_to_nothing_and_refuses_a_second_run(planted, tmp_path, capsys, monkeypatch):
    storage = tmp_path / "runs"
    config = tiny_study(planted, storage, name="finished")
    start_study(config, progress=print, stage_runner=PlantedStageRunner(tmp_path / "fake"))
    again = PlantedStageRunner(tmp_path / "fake")
    resume_study(storage / "finished", progress=print, stage_runner=again)
    assert again.trials_started == []
    # With the study's own runner: nothing left to train, so Ray is never joined or started.
    monkeypatch.setattr(processes, "watch_descendants", lambda: None)
    monkeypatch.setattr(TuneStageRunner, "for_study", lambda *_: pytest.fail("Ray started for a finished study"))
    resume_study(storage / "finished", progress=print)

    config_file = tmp_path / "study.yaml"
    config_file.write_text(dump_study_config(config))
    capsys.readouterr()
    assert main(["study", "run", str(config_file)]) == 2
    assert "already holds a study" in capsys.readouterr().err


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(planted, tmp_path, capsys):
    storage = tmp_path / "runs"
    config = tiny_study(planted, storage, name="locked")
    study_dir = storage / "locked"
    study_dir.mkdir(parents=True)
    (study_dir / "study.yaml").write_text(dump_study_config(config))
    with StudyLock(study_dir):
        assert main(["study", "resume", str(study_dir)]) == 2
    assert "being written by another process" in capsys.readouterr().err


def test_resume_reads_the_study_config_only_under_the_lock(tmp_path):
    from heartbeatai.study.lock import StudyLocked

    study_dir = tmp_path / "runs" / "starting"
    study_dir.mkdir(parents=True)  # a first driver holds the lock and has not written study.yaml yet
    with StudyLock(study_dir), pytest.raises(StudyLocked):
        resume_study(study_dir, progress=print, stage_runner=PlantedStageRunner(tmp_path / "fake"))


def test_a_second_ablation_script_on_a_locked_study_says_one_line(planted, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation_script", Path(__file__).parents[1] / "studies" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    config = tiny_study(planted, tmp_path / "runs", name="locked-script")
    study_dir = tmp_path / "runs" / "locked-script"
    study_dir.mkdir(parents=True)
    config_file = study_dir / "study.yaml"
    config_file.write_text(dump_study_config(config))
    with StudyLock(study_dir):
        assert ablation.main(["--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "being written by another process" in err and "Traceback" not in err


# -- the real driver and its Ray -------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _session_pids(session: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, sid in (line.split() for line in out.splitlines()) if int(sid) == session]


@pytest.mark.slow
@pytest.mark.ray
def test_resume_after_a_killed_ray_driver_restores_the_tune_experiment(planted, tmp_path):
    storage = tmp_path / "runs"
    # Trials run one at a time, so the driver dies with one trial done and the other not.
    config = tiny_study(planted, storage, name="resumable", search={"trials_per_fold": 2},
                        resources={"workers": 1, "cpus_per_worker": 2})
    config_file = tmp_path / "study.yaml"
    config_file.write_text(dump_study_config(config))
    study_dir = storage / "resumable"
    store = ResultsStore(str(storage))

    driver = subprocess.Popen([*HEARTBEATAI, "study", "run", str(config_file)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _finished_search_trials(store, "resumable"):
            assert driver.poll() is None, driver.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no search trial finished in time"
            time.sleep(1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver's session: it and the Ray it started
        driver.wait()
    for pid in _session_pids(driver.pid):
        os.kill(pid, signal.SIGKILL)

    done_before = _finished_search_trials(store, "resumable")
    assert done_before
    epochs_before = store.read("resumable", "epochs", filters={"trial_id": sorted(done_before)})

    resumed = subprocess.run([*HEARTBEATAI, "study", "resume", str(study_dir)], env=_env(),
                             capture_output=True, text=True, timeout=400, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    assert {"search", "selection", "tested", "arms"} <= set(_journal(study_dir)["lodo:gamma"])
    search = _latest(store, "resumable", arm="search")
    finished = search[search["status"].isin(["completed", "early_stopped"])]
    assert len(finished) == 2 and done_before <= set(finished["trial_id"])
    assert set(search["status"]) <= {"completed", "early_stopped", "errored"}
    assert search.loc[search["status"] == "errored", "error"].str.startswith("abandoned").all()
    epochs_after = store.read("resumable", "epochs", filters={"trial_id": sorted(done_before)})
    assert len(epochs_after) == len(epochs_before)
