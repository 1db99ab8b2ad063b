"""A killed study driver loses nothing that finished: `study resume` completes it without rerunning done work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heartbeatai.results import ResultsStore
from heartbeatai.study.study_config import dump_study_config
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset

pytestmark = pytest.mark.ray
# The console script: `python -m heartbeatai.cli` would load the CLI module twice (as __main__).
HEARTBEATAI = [str(Path(sys.executable).with_name("heartbeatai"))]


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _finished_search_trials(store: ResultsStore, study: str) -> set[str]:
    trials = store.read(study, "trials", filters={"arm": "search"})
    latest = trials.drop_duplicates("trial_id", keep="last")
    return set(latest.loc[latest["status"].isin(["completed", "early_stopped"]), "trial_id"])


def _session_pids(session: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, sid in (line.split() for line in out.splitlines()) if int(sid) == session]


def test_resume_after_killed_driver_keeps_finished_trials_and_completes(tmp_path):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    storage = tmp_path / "runs"
    # Trials run one at a time, so the driver dies with one trial done and the other not.
    config = tiny_study(data, storage, name="resumable", search={"trials_per_fold": 2},
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

        # A second writer is refused while the first holds the lock.
        second = subprocess.run([*HEARTBEATAI, "study", "resume", str(study_dir)], env=_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "being written by another process" in second.stderr
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

    journal = json.loads((study_dir / "journal.json").read_text())
    assert {"search", "selection", "tested", "arms"} <= set(journal["lodo:gamma"])
    search = store.read("resumable", "trials", filters={"arm": "search"}).drop_duplicates("trial_id", keep="last")
    finished = search[search["status"].isin(["completed", "early_stopped"])]
    assert len(finished) == 2 and done_before <= set(finished["trial_id"])
    # A trial the killed driver had started but Tune had not yet recorded is closed, not left running.
    assert set(search["status"]) <= {"completed", "early_stopped", "errored"}
    assert search.loc[search["status"] == "errored", "error"].str.startswith("abandoned").all()
    # Finished trials were not run again: their epoch rows are the ones written before the kill.
    epochs_after = store.read("resumable", "epochs", filters={"trial_id": sorted(done_before)})
    assert len(epochs_after) == len(epochs_before)
    tested = store.read("resumable", "fold_metrics", filters={"split": "test", "metric": "macro_auroc"})
    assert {"full", "prevalence", "search"} <= set(tested["arm"])

    again = subprocess.run([*HEARTBEATAI, "study", "run", str(config_file)], env=_env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds a study" in again.stderr
