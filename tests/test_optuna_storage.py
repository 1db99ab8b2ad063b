"""A fold's Optuna storage: a journal file per fold by default (safe on NFS), SQLite kept for a
study that began with it, an RDB URL when given; a killed writer loses nothing written and its
lock does not stop the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution

from heartbeatai.study.optuna_storage import JOURNAL, default_url, fold_storage, journal_path

SPACE = {"x": FloatDistribution(0.0, 1.0)}


def _add(storage, name: str, values) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize")
    for value in values:
        study.add_trial(optuna.trial.create_trial(params={"x": value}, distributions=SPACE, value=value))
    return study


def test_a_new_study_journals_each_fold_apart_and_an_old_one_keeps_its_sqlite(tmp_path):
    url = default_url(tmp_path)
    assert url == f"{JOURNAL}{tmp_path.resolve() / 'optuna'}"
    _add(fold_storage(url, "lodo:cpsc"), "s/lodo:cpsc", [0.1, 0.2])
    _add(fold_storage(url, "reference:cpsc:0"), "s/reference:cpsc:0", [0.3])
    assert sorted(p.name for p in (tmp_path / "optuna").glob("*.log")) == ["lodo_cpsc.log", "reference_cpsc_0.log"]
    # Resume: a fresh storage object reads what the first wrote, and adds to it.
    again = _add(fold_storage(url, "lodo:cpsc"), "s/lodo:cpsc", [0.9])
    assert [t.value for t in again.trials] == [0.1, 0.2, 0.9]
    assert optuna.load_study(study_name="s/reference:cpsc:0", storage=fold_storage(url, "reference:cpsc:0")).best_value == 0.3

    old = tmp_path / "old"
    old.mkdir()
    (old / "optuna.db").touch()
    assert default_url(old) == f"sqlite:///{old / 'optuna.db'}"
    assert isinstance(fold_storage(f"sqlite:///{tmp_path / 'given.db'}", "lodo:cpsc"), optuna.storages.RDBStorage)


_WRITER = """
import sys, optuna
from optuna.distributions import FloatDistribution
from heartbeatai.study.optuna_storage import fold_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="s/lodo:a", storage=fold_storage(sys.argv[1], "lodo:a"), load_if_exists=True)
print("ready", flush=True)
i = 0
while True:
    study.add_trial(optuna.trial.create_trial(params={"x": (i % 100) / 100}, value=float(i),
                                              distributions={"x": FloatDistribution(0.0, 1.0)}))
    i += 1
"""


def test_a_killed_writer_loses_no_finished_trial_and_its_stale_lock_is_broken(tmp_path):
    url = f"{JOURNAL}{tmp_path / 'optuna'}"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(1.5)
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # mid-append, at any point of the lock protocol
        writer.wait(timeout=30)
    path = journal_path(url, "lodo:a")
    # What the killed writer finished is there, in order; a half-written last line is not read.
    study = optuna.load_study(study_name="s/lodo:a", storage=fold_storage(url, "lodo:a", grace_period=3))
    values = [t.value for t in study.trials]
    assert len(values) > 5 and values == [float(i) for i in range(len(values))]
    # The worst case: killed while holding the lock. The next writer breaks it after the grace period.
    lock = f"{path}.lock"
    open(lock, "w").close()
    started = time.monotonic()
    _add(fold_storage(url, "lodo:a", grace_period=3), "s/lodo:a", [0.5])
    assert 3 <= time.monotonic() - started < 60 and not os.path.exists(lock)
    reread = optuna.load_study(study_name="s/lodo:a", storage=fold_storage(url, "lodo:a"))
    assert len(reread.trials) == len(values) + 1


@pytest.mark.parametrize("fold_id", ["lodo:georgia", "intra:cpsc:2", "reference:ptbxl:0"])
def test_journal_files_are_named_by_fold_and_stay_in_their_folder(tmp_path, fold_id):
    path = journal_path(f"{JOURNAL}{tmp_path}", fold_id)
    assert path.parent == tmp_path and path.suffix == ".log" and ":" not in path.name


def test_a_line_torn_by_a_killed_writer_is_cut_so_the_journal_stays_readable(tmp_path):
    url = f"{JOURNAL}{tmp_path}"
    _add(fold_storage(url, "lodo:a"), "s/lodo:a", [0.1, 0.2])
    path = journal_path(url, "lodo:a")
    whole = path.read_bytes()
    with open(path, "ab") as journal:  # killed inside its write: half a line, no newline
        journal.write(b'{"op_code": 6, "worker_id": "dead", "trial_id": 1, "par')
    # Optuna alone would glue the next append onto the torn line and then refuse the file.
    study = _add(fold_storage(url, "lodo:a"), "s/lodo:a", [0.3])
    assert path.read_bytes().startswith(whole)
    reread = optuna.load_study(study_name="s/lodo:a", storage=fold_storage(url, "lodo:a"))
    assert [t.value for t in reread.trials] == [0.1, 0.2, 0.3] == [t.value for t in study.trials]
