"""The algorithms whose step keeps state (GroupDRO's q, Fishr's moving averages and step
count) or draws random numbers (Mixup) through the real training loop: a run stopped after an
epoch and resumed from its checkpoint ends as an uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from heartbeatai.training.loop import run_training
from heartbeatai.training.spec import TrainSpec
from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_planted_dataset(tmp_path_factory.mktemp("planted"))


class Recorder:
    def __init__(self, keep: Path | None = None, stop_after: int | None = None) -> None:
        self.metrics: list[dict] = []
        self.keep, self.stop_after = keep, stop_after

    def __call__(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.metrics.append({k: v for k, v in metrics.items() if k != "epoch_seconds"})
        if self.keep is not None:
            shutil.copytree(checkpoint_dir, self.keep / f"epoch-{metrics['epoch']}")
        if self.stop_after == metrics["epoch"]:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [
    {"algorithm.kind": "groupdro", "algorithm.eta": 0.1},
    {"algorithm.kind": "fishr", "algorithm.anneal_steps": 1, "algorithm.penalty_weight": 10.0},
    {"algorithm.kind": "mixup", "model.demographics": True},
], ids=lambda a: a["algorithm.kind"])
def test_a_stateful_algorithm_stopped_after_an_epoch_and_resumed_ends_as_an_uninterrupted_one(planted, tmp_path,
                                                                                             algorithm):
    def spec():
        return TrainSpec(trial=tiny_trial(**{"optim.epochs": 2, **algorithm}), data_path=str(planted), fold_id=FOLD,
                         classes=CLASSES)

    uninterrupted = Recorder()
    run_training(spec(), report=uninterrupted)
    interrupted = Recorder(keep=tmp_path, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_training(spec(), report=interrupted)
    resumed = Recorder()
    run_training(spec(), report=resumed, resume_checkpoint=tmp_path / "epoch-1")
    assert interrupted.metrics + resumed.metrics == uninterrupted.metrics
    assert "train_penalty" in uninterrupted.metrics[-1] or algorithm["algorithm.kind"] != "fishr"
