"""The held-out domain is never read before the selected model is tested (DESIGN.md, Study).

A spy on PreparedDataset's signal reads logs the rows each read touches. Against the
in-process fake stage runner, which trains for real (the planted one reads no signal), the spy
sees every read of the search and the selection; the slow test installs it in every Ray trial
process too (worker_process_setup_hook).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.study.sealed_split import PeekingError
from heartbeatai.study.study_run import StudyPaths, fold_runners
from heartbeatai.testing.fake_stage_runner import FakeStageRunner
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from study_fixtures import one_torch_thread, tiny_study
from train_fixtures import write_planted_dataset

SPY_LOG = "HEARTBEATAI_TEST_SPY_LOG"


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


def _search_reads_only_train_and_val_then_testing_reads_the_test_rows(runner, data: Path, log: Path) -> None:
    with pytest.raises(PeekingError):
        runner.sealed.release_test(runner.journal)

    runner.search_and_select()

    dataset = PreparedDataset(data)
    test_rows = set(dataset.index_of(list(runner.sealed._test_ids)).tolist())
    train_val_rows = set(dataset.index_of([*runner.sealed.train_ids, *runner.sealed.val_ids]).tolist())
    read = rows_read(log)
    assert read, "the spy saw no reads: it is not installed where the trials run"
    assert read <= train_val_rows
    assert not read & test_rows
    assert runner.journal.done(runner.fold_id, "selection")

    runner.run()  # now the selected model is tested: the spy must see the test rows
    assert test_rows <= rows_read(log)


@pytest.fixture
def spy_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "reads.log"
    monkeypatch.setenv(SPY_LOG, str(log))
    for name in ("signal", "window"):  # undone after the test, spied or not
        monkeypatch.setattr(PreparedDataset, name, getattr(PreparedDataset, name))
    install_spy()
    return log


def test_test_domain_is_not_read_until_the_selection_is_recorded(tmp_path, spy_log):
    one_torch_thread()
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config = tiny_study(data, tmp_path / "runs", name="nopeek", selection={"oracle": True}, record_views=1)
    (runner,) = list(fold_runners(config, StudyPaths(tmp_path / "runs" / "nopeek"), progress=print,
                                  stage_runner=FakeStageRunner(tmp_path / "fake")))
    _search_reads_only_train_and_val_then_testing_reads_the_test_rows(runner, data, spy_log)
    # Torch's checkpoint reader, in this process: the view is explained by `full` at the first arm
    # seed, the model every ablation is compared against, on its own test predictions.
    views = runner.store.read("nopeek", "record_views")
    assert len(views) == 1 and np.array(json.loads(views["attribution"].iloc[0])).shape[0] == 12
    full = runner.store.read("nopeek", "trials", filters={"arm": "full", "seed": config.seeds[0]})
    assert (views["arm"].iloc[0], views["seed"].iloc[0], views["trial_id"].iloc[0]) == \
        ("full", config.seeds[0], full["trial_id"].iloc[-1])


@pytest.mark.slow  # trains two searches for real: 10-30 s on shared cores
@pytest.mark.parametrize("kind", [k for k in ALGORITHMS if k != DEFAULT_ALGORITHM])
def test_no_algorithm_arms_search_reads_the_test_domain_before_the_selection(tmp_path, spy_log, kind):
    # Every algorithm arm searches and selects before the fold's selection releases the test split.
    one_torch_thread()
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config = tiny_study(data, tmp_path / "runs", name="nopeek", algorithms=[kind], search={"trials_per_fold": 1})
    (runner,) = list(fold_runners(config, StudyPaths(tmp_path / "runs" / "nopeek"), progress=print,
                                  stage_runner=FakeStageRunner(tmp_path / "fake")))
    _search_reads_only_train_and_val_then_testing_reads_the_test_rows(runner, data, spy_log)
    assert runner.journal.done(runner.fold_id, f"selection:algorithm-{kind}")


@pytest.mark.slow
@pytest.mark.ray
def test_no_ray_trial_process_reads_the_test_domain_before_the_selection(tmp_path, spy_log):
    import ray

    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    config = tiny_study(data, tmp_path / "runs", name="nopeek")
    tests_dir = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={
        "worker_process_setup_hook": "test_study_no_peeking.install_spy",
        "env_vars": {SPY_LOG: str(spy_log), "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])},
    })
    try:
        (runner,) = list(fold_runners(config, StudyPaths(tmp_path / "runs" / "nopeek"), progress=print))
        _search_reads_only_train_and_val_then_testing_reads_the_test_rows(runner, data, spy_log)
    finally:
        ray.shutdown()
