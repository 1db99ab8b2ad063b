"""The real study driver under Ray, signalled and killed at every stage, resumes to the tables of
an uninterrupted run of the same seeds, and leaves no process behind.

`search.reproducible` (one search trial at a time) makes the uninterrupted run repeatable, so
the interrupted one is compared with it exactly: keys, configurations and metrics, epochs
included (wall times and the paths of checkpoints excepted; Tune names trials after a random
experiment id, so trial ids are compared by their index in the experiment).

Two chains of drivers, each a `study run` and then `study resume`s, each stopped at the next
stage: SIGINT to the process group (a terminal's Ctrl-C) and SIGTERM to the driver alone in
one; SIGKILL to the driver and to a trial's worker process in the other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from heartbeatai.processes import descendants
from heartbeatai.results import ResultsStore
from heartbeatai.study.study_config import dump_study_config
from study_fixtures import assert_same_tables, comparable_tables, tiny_study
from train_fixtures import write_planted_dataset

pytestmark = [pytest.mark.slow, pytest.mark.ray]
HEARTBEATAI = str(Path(sys.executable).with_name("heartbeatai"))
STUDY = "kills"
FOLD = "lodo:gamma"
HINT = re.compile(r"^interrupted: `\S*heartbeatai study resume (\S+)` continues$", re.MULTILINE)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    data = write_planted_dataset(root / "data", records_per_domain=24)
    config = tiny_study(data, root / "unused", name=STUDY, arms=["full", "no-se", "prevalence"], seeds=[1],
                        search={"trials_per_fold": 2, "reproducible": True}, selection={"oracle": True},
                        record_views=1, resources={"workers": 1})
    config_file = root / "study.yaml"
    config_file.write_text(dump_study_config(config))
    # A private temp dir: the drivers' own Ray sessions, apart from any other Ray on the machine.
    tmp = Path(tempfile.mkdtemp(prefix="hbk", dir="/tmp"))
    yield config_file, tmp
    shutil.rmtree(tmp, ignore_errors=True)


class Driver:
    """One `heartbeatai study run|resume` in its own session, its output read as it comes."""

    def __init__(self, args: list[str], tmp: Path):
        env = {**os.environ, "TMPDIR": str(tmp), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen([HEARTBEATAI, "study", *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.family: dict[int, int] = {}  # every descendant seen: pid -> start time
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.family.update(descendants(self.process.pid))
            assert self.process.poll() is None, f"the driver ended before {what}:\n{self.output[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n{self.output[-4000:]}"
            time.sleep(0.2)
        self.family.update(descendants(self.process.pid))

    def said(self, fragment: str):
        return lambda: fragment in self.output

    def finish(self, timeout: float = 600) -> int:
        rc = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def assert_nothing_left(self, timeout: float = 60) -> None:
        """Every process the driver started is gone (its watcher stops them if the driver could not)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = {pid: _cmdline(pid) for pid, start in self.family.items() if _started(pid) == start}
            if not alive:
                return
            assert time.monotonic() < deadline, f"left behind: {alive}"
            time.sleep(0.5)


def _started(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _journal(study_dir: Path) -> dict:
    path = study_dir / "journal.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        return {}


def _checkpointed(store: ResultsStore, **where) -> bool:
    """A trial of the stage has a stored row with its first checkpoint (Tune snapshots its state then)."""
    trials = store.read(STUDY, "trials", filters={"fold_id": FOLD, **where})
    return bool(trials["checkpoint_path"].notna().any()) if not trials.empty else False


def _trial_index(store: ResultsStore) -> dict[str, str]:
    """Tune's trial id -> its stage and index in the experiment (from the trial's folder name)."""
    trials = store.read(STUDY, "trials")
    index = {}
    for row in trials.itertuples():
        folder = os.path.basename(json.loads(row.provenance)["tune_trial_dir"] or "")
        found = re.match(rf"run_trial_{re.escape(row.trial_id)}_(\d+)_", folder)
        index[row.trial_id] = f"{row.selection}-{found.group(1) if found else row.trial_id}"
    return index


def _tables(storage: Path) -> dict:
    store = ResultsStore(str(storage))
    trials = store.read(STUDY, "trials")
    assert not trials["error"].fillna("").str.startswith("abandoned").any(), "a trial was lost and rerun"
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["trial_id", "status", "error"]]
    return comparable_tables(store, STUDY, trial_ids=_trial_index(store).get)


def _stopped(driver: Driver, signum: int, study_dir: Path, not_done: str) -> None:
    rc = driver.finish()
    out = driver.output
    assert rc == 128 + signum, out[-4000:]
    assert HINT.findall(out) == [str(study_dir)], out[-4000:]
    for wrong in ("Tuner.restore", "finished: results in", "Traceback"):
        assert wrong not in out, f"{wrong!r} in an interrupted driver's output:\n{out[-4000:]}"
    stages = _journal(study_dir).get(FOLD, {}) | _journal(study_dir).get("study", {})
    assert not_done not in stages, f"{not_done} marked done by an interrupted driver"
    driver.assert_nothing_left()


def _killed(driver: Driver, study_dir: Path, not_done: str) -> None:
    os.kill(driver.process.pid, signal.SIGKILL)  # the driver alone: its Ray must go with it
    driver.finish()
    stages = _journal(study_dir).get(FOLD, {}) | _journal(study_dir).get("study", {})
    assert not_done not in stages
    driver.assert_nothing_left()


def _completed(driver: Driver) -> None:
    rc = driver.finish()
    assert rc == 0, driver.output[-4000:]
    assert "Tuner.restore" not in driver.output
    driver.assert_nothing_left()


@pytest.fixture(scope="module")
def uninterrupted(setting, tmp_path_factory) -> dict:
    config_file, tmp = setting
    storage = tmp_path_factory.mktemp("straight")
    driver = Driver(["run", str(config_file), "--storage", str(storage)], tmp)
    _completed(driver)
    return _tables(storage)


def test_sigint_and_sigterm_at_every_stage_then_resume_repeat_the_uninterrupted_study(setting, uninterrupted,
                                                                                     tmp_path):
    config_file, tmp = setting
    storage = tmp_path / "runs"
    study_dir = storage / STUDY
    store = ResultsStore(str(storage))
    resume = ["resume", str(study_dir)]

    # The search: Ctrl-C (the whole process group) once its first trial has a checkpoint.
    driver = Driver(["run", str(config_file), "--storage", str(storage)], tmp)
    driver.wait_for(lambda: _checkpointed(store, arm="search"), "a search checkpoint")
    os.killpg(driver.process.pid, signal.SIGINT)
    _stopped(driver, signal.SIGINT, study_dir, "search")
    # Just after "arms:" (the Ctrl-C that once marked the stage done): SIGTERM.
    driver = Driver(resume, tmp)
    driver.wait_for(driver.said("] arms:"), "the arms stage")
    os.kill(driver.process.pid, signal.SIGTERM)
    _stopped(driver, signal.SIGTERM, study_dir, "arms")
    # Mid-way through an arm run.
    driver = Driver(resume, tmp)
    driver.wait_for(lambda: _checkpointed(store, selection="val"), "an arm checkpoint")
    os.killpg(driver.process.pid, signal.SIGINT)
    _stopped(driver, signal.SIGINT, study_dir, "arms")
    # The record views: the stage that follows the arms; it finishes, the analysis never starts.
    driver = Driver(resume, tmp)
    driver.wait_for(lambda: "arms" in _journal(study_dir).get(FOLD, {}), "the record views")
    os.killpg(driver.process.pid, signal.SIGINT)
    _stopped(driver, signal.SIGINT, study_dir, "analysis")
    # The analysis, after its first line.
    driver = Driver(resume, tmp)
    driver.wait_for(driver.said("analysis:"), "the analysis")
    os.killpg(driver.process.pid, signal.SIGINT)
    _stopped(driver, signal.SIGINT, study_dir, "analysis")

    _completed(Driver(resume, tmp))
    assert_same_tables(_tables(storage), uninterrupted)


def test_sigkill_of_the_driver_at_every_stage_and_of_a_trial_worker_then_resume_repeat_the_study(
        setting, uninterrupted, tmp_path):
    config_file, tmp = setting
    storage = tmp_path / "runs"
    study_dir = storage / STUDY
    store = ResultsStore(str(storage))
    resume = ["resume", str(study_dir)]

    # The search, after its first trial's first checkpoint.
    driver = Driver(["run", str(config_file), "--storage", str(storage)], tmp)
    driver.wait_for(lambda: _checkpointed(store, arm="search"), "a search checkpoint")
    _killed(driver, study_dir, "search")
    # A trial's worker, in the arms: Tune retries the trial from its checkpoint (max_failures);
    # then the driver, after an arm run's first checkpoint (the epochs and wall time once lost).
    driver = Driver(resume, tmp)
    driver.wait_for(lambda: _checkpointed(store, selection="val"), "an arm checkpoint")
    workers = [pid for pid in descendants(driver.process.pid) if _cmdline(pid).startswith("ray::ImplicitFunc")]
    assert workers, "no trial worker found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    driver.wait_for(lambda: len(_finished(store, "val")) >= 1, "an arm run finishing after its worker died")
    _killed(driver, study_dir, "arms")
    # The record views (right after the arms), then the analysis.
    driver = Driver(resume, tmp)
    driver.wait_for(lambda: "arms" in _journal(study_dir).get(FOLD, {}), "the record views")
    _killed(driver, study_dir, "analysis")
    driver = Driver(resume, tmp)
    driver.wait_for(driver.said("analysis:"), "the analysis")
    _killed(driver, study_dir, "analysis")

    _completed(Driver(resume, tmp))
    assert_same_tables(_tables(storage), uninterrupted)


def _finished(store: ResultsStore, selection: str) -> pd.DataFrame:
    trials = store.read(STUDY, "trials", filters={"fold_id": FOLD, "selection": selection})
    trials = trials.drop_duplicates("trial_id", keep="last")
    return trials[trials["status"].isin(["completed", "early_stopped"])]
