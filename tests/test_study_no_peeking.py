"""The held-out domain is never read before the selected model is tested (DESIGN.md, Study).

A spy on PreparedDataset's signal reads runs in the driver and, through Ray's
worker_process_setup_hook, in every trial process; it logs the rows each process reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.study.orchestrator import StudyPaths, fold_runners
from heartbeatai.study.sealed_split import PeekingError
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset

SPY_LOG = "HEARTBEATAI_TEST_SPY_LOG"
pytestmark = pytest.mark.ray


def install_spy() -> None:
    """Wrap the row-reading methods so every read appends its row to the log file."""
    log = os.environ[SPY_LOG]
    for name in ("signal", "window"):
        original = getattr(PreparedDataset, name)
        if getattr(original, "_spied", False):
            continue

        def spied(self, row, *args, _original=original, **kwargs):
            with open(log, "a") as handle:
                handle.write(f"{int(row)}\n")
            return _original(self, row, *args, **kwargs)

        spied._spied = True
        setattr(PreparedDataset, name, spied)


def rows_read(log: Path) -> set[int]:
    return {int(line) for line in log.read_text().split()} if log.exists() else set()


def test_test_domain_is_not_read_until_the_selection_is_recorded(tmp_path, monkeypatch):
    import ray

    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config = tiny_study(data, tmp_path / "runs", name="nopeek")
    log = tmp_path / "reads.log"
    monkeypatch.setenv(SPY_LOG, str(log))
    install_spy()
    tests_dir = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={
        "worker_process_setup_hook": "test_study_no_peeking.install_spy",
        "env_vars": {SPY_LOG: str(log), "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])},
    })
    try:
        (runner,) = list(fold_runners(config, StudyPaths(tmp_path / "runs" / "nopeek"), progress=print))
        with pytest.raises(PeekingError):
            runner.sealed.release_test(runner.journal)

        runner.search_and_select()

        dataset = PreparedDataset(data)
        test_rows = set(dataset.index_of(list(runner.sealed._test_ids)).tolist())
        train_val_rows = set(dataset.index_of([*runner.sealed.train_ids, *runner.sealed.val_ids]).tolist())
        read = rows_read(log)
        assert read, "the spy saw no reads: it is not installed in the trial processes"
        assert read <= train_val_rows
        assert not read & test_rows
        assert runner.journal.done(runner.fold_id, "selection")

        runner.run()  # now the selected model is tested: the spy must see the test rows
        assert test_rows <= rows_read(log)
    finally:
        ray.shutdown()
