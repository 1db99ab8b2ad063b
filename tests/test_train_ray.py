"""The training run on Ray Train: 2-worker DDP on CPU learns, and survives a killed worker."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (DESIGN.md)
import ray  # noqa: E402
import ray.train  # noqa: E402

from heartbeatai.training.ray_train import (  # noqa: E402
    DRIVER_CPU,
    cluster_totals,
    fit_with_ray_train,
    train_loop_per_worker,
    worker_cpus,
)
from heartbeatai.training.spec import TrainSpec  # noqa: E402
from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    # A private temp dir keeps this instance's sockets and logs apart from any other
    # Ray on the machine; shutdown stops exactly the processes this init started.
    temp_dir = tempfile.mkdtemp(prefix="ray-hb-", dir="/tmp")
    tests_dir = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
             runtime_env={"env_vars": {"PYTHONPATH": tests_dir, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def uninterrupted(local_ray, planted, tmp_path_factory):
    spec = TrainSpec(trial=tiny_trial(), data_path=str(planted), fold_id=FOLD, classes=CLASSES)
    storage = tmp_path_factory.mktemp("ray-storage")
    return fit_with_ray_train(spec, workers=2, storage_path=storage, name="uninterrupted")


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k in
            ("epoch", "train_loss", "val_loss", "val_macro_auroc", "val_macro_f1", "val_challenge_score")}


@pytest.mark.slow
def test_two_workers_fit_the_two_cpus_this_ray_reports_beside_a_token_driver(local_ray):
    capacity = cluster_totals()
    assert capacity == {"CPU": 2.0, "GPU": 0.0}
    assert 2 * worker_cpus(capacity["CPU"], 2) + DRIVER_CPU <= capacity["CPU"]


@pytest.mark.slow
def test_two_worker_ddp_run_on_cpu_learns_and_keeps_its_checkpoints(uninterrupted):
    result = uninterrupted
    assert result.error is None
    assert result.metrics["epoch"] == 2
    assert result.metrics["val_macro_auroc"] >= 0.7
    with result.checkpoint.as_directory() as directory:
        assert (Path(directory) / "checkpoint.pt").is_file()


def _killing_loop(marker_dir: str, kill_after_epoch: int):
    """The worker function, but rank 1 dies (os._exit) once, after `kill_after_epoch`."""

    def loop(loop_config: dict) -> None:
        if ray.train.get_checkpoint() is not None:
            Path(marker_dir, "resumed").touch()
        rank = ray.train.get_context().get_world_rank()
        report = ray.train.report

        def report_then_die(metrics, checkpoint=None, **kwargs):
            report(metrics, checkpoint=checkpoint, **kwargs)
            killed = Path(marker_dir, "killed")
            if rank == 1 and metrics["epoch"] == kill_after_epoch and not killed.exists():
                killed.touch()
                time.sleep(4)  # Ray polls every 2 s: let the controller register rank 0's checkpoint
                os._exit(1)

        ray.train.report = report_then_die
        train_loop_per_worker(loop_config)

    return loop


@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_checkpoint_and_ends_as_an_uninterrupted_run(
    uninterrupted, planted, tmp_path
):
    spec = TrainSpec(trial=tiny_trial(), data_path=str(planted), fold_id=FOLD, classes=CLASSES)
    result = fit_with_ray_train(spec, workers=2, storage_path=tmp_path / "storage", name="killed",
                                max_failures=1, train_loop=_killing_loop(str(tmp_path), kill_after_epoch=1))
    assert result.error is None
    assert (tmp_path / "killed").exists() and (tmp_path / "resumed").exists()
    assert _comparable(result.metrics) == _comparable(uninterrupted.metrics)
