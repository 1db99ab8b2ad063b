"""Every registered algorithm through the real training loop: a run stopped after an epoch and
resumed from its checkpoint ends as an uninterrupted one, and what the checkpoint exports is
what predicts (for weight averaging: the average, its batch-norm statistics refreshed by the
loop's before_validation hook, loadable into a plain network)."""

from __future__ import annotations

import pytest
import torch

from heartbeatai.training.algorithms import ALGORITHMS
from heartbeatai.training.checkpoint import load_checkpoint
from heartbeatai.training.factory import model_from_config
from heartbeatai.training.loop import run_training
from test_train import Recorder, _comparable, _spec
from train_fixtures import write_planted_dataset

pytestmark = pytest.mark.slow  # four epochs of the real loop per algorithm


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    torch.set_num_threads(1)
    return write_planted_dataset(tmp_path_factory.mktemp("planted"))


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_every_algorithm_resumes_exactly_through_the_training_loop(planted, tmp_path, kind):
    overrides = {"optim.epochs": 2, "algorithm.kind": kind}
    uninterrupted = Recorder(keep=tmp_path / "straight")
    run_training(_spec(planted, **overrides), report=uninterrupted)
    interrupted = Recorder(keep=tmp_path, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_training(_spec(planted, **overrides), report=interrupted)
    resumed = Recorder()
    run_training(_spec(planted, **overrides), report=resumed, resume_checkpoint=tmp_path / "epoch-1")
    assert _comparable(interrupted.metrics + resumed.metrics) == _comparable(uninterrupted.metrics)

    state = load_checkpoint(tmp_path / "straight" / "epoch-2")
    plain = model_from_config(_spec(planted, **overrides).trial, 2)
    plain.load_state_dict(state["model"])  # strict: what predicts is a plain network
    if kind in ("ema", "swa"):
        live = state["algorithm"]["live"]
        assert not torch.equal(state["model"]["stem.1.running_mean"], live["stem.1.running_mean"])  # refreshed
