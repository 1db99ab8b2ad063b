"""The training loop in-process: it learns, repeats itself, resumes exactly, predicts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from heartbeatai.data.folds import fold_records, read_folds
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.metric_names import EPOCH_COLUMNS, VALIDATION_METRICS, metric_mode
from heartbeatai.training.batches import TwoDomainBatchSampler
from heartbeatai.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from heartbeatai.training import loop
from heartbeatai.training.loop import run_training
from heartbeatai.training.predict import predict
from heartbeatai.training.spec import TrainSpec
from train_fixtures import CLASSES, FOLD, tiny_trial, write_planted_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_planted_dataset(tmp_path_factory.mktemp("planted"))


def _spec(data: Path, **overrides) -> TrainSpec:
    return TrainSpec(trial=tiny_trial(**overrides), data_path=str(data), fold_id=FOLD, classes=CLASSES)


class Recorder:
    """A report callback keeping every epoch's metrics and a copy of each checkpoint."""

    def __init__(self, keep: Path | None = None, stop_after: int | None = None) -> None:
        self.metrics: list[dict] = []
        self.keep = keep
        self.stop_after = stop_after

    def __call__(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.metrics.append(metrics)
        if self.keep is not None:
            shutil.copytree(checkpoint_dir, self.keep / f"epoch-{metrics['epoch']}")
        if self.stop_after == metrics["epoch"]:
            raise KeyboardInterrupt  # what a killed run looks like from inside


def _comparable(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in metrics]


def test_in_process_run_learns_the_planted_pattern_and_reports_every_epoch(planted, tmp_path):
    recorder = Recorder(keep=tmp_path)
    final = run_training(_spec(planted), report=recorder)
    assert [m["epoch"] for m in recorder.metrics] == [1, 2]
    assert all(tuple(m) == EPOCH_COLUMNS for m in recorder.metrics)
    assert set(VALIDATION_METRICS) <= set(EPOCH_COLUMNS)
    assert metric_mode("val_loss") == "min" and metric_mode("val_macro_auroc") == "max"
    assert final["val_macro_auroc"] >= 0.7
    for key in ("train_loss", "val_loss", "val_macro_f1", "val_macro_auprc", "val_challenge_score"):
        assert np.isfinite(final[key])
    state = torch.load(tmp_path / "epoch-2" / CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == 2 and state["classes"] == list(CLASSES)
    assert state["thresholds"].shape == (len(CLASSES),)
    assert {"model", "optimizer", "scheduler", "rng", "sampler", "config"} <= state.keys()


@pytest.mark.slow
def test_two_runs_with_the_same_seed_report_equal_metrics(planted):
    first, second, other = Recorder(), Recorder(), Recorder()
    run_training(_spec(planted), report=first)
    run_training(_spec(planted), report=second)
    run_training(_spec(planted, seed=1), report=other)
    assert _comparable(first.metrics) == _comparable(second.metrics)
    assert _comparable(first.metrics) != _comparable(other.metrics)


@pytest.mark.parametrize(
    "variant",
    [
        # The simpler variant runs with `make test-slow`; the fast suite resumes the one with every part.
        pytest.param({"mixstyle.mix": "random"}, marks=pytest.mark.slow),
        # Every stochastic and optional part at once: domain-paired batches, ASL with
        # class weights and smoothing, age/sex input, cosine schedule.
        {"mixstyle.mix": "crossdomain", "loss.kind": "asl", "loss.pos_weight": True, "label_smoothing": 0.1,
         "model.demographics": True, "optim.schedule": "cosine"},
    ],
    ids=["random-mixstyle", "crossdomain-asl-demographics"],
)
def test_a_run_stopped_after_an_epoch_and_resumed_ends_as_an_uninterrupted_one(planted, tmp_path, variant):
    overrides = {"optim.epochs": 3, "mixstyle.p": 1.0, "model.dropout": 0.3, **variant}
    uninterrupted = Recorder()
    run_training(_spec(planted, **overrides), report=uninterrupted)

    interrupted = Recorder(keep=tmp_path, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_training(_spec(planted, **overrides), report=interrupted)
    resumed = Recorder()
    run_training(_spec(planted, **overrides), report=resumed, resume_checkpoint=tmp_path / "epoch-1")
    assert [m["epoch"] for m in resumed.metrics] == [2, 3]
    assert _comparable(interrupted.metrics + resumed.metrics) == _comparable(uninterrupted.metrics)


def test_resume_refuses_a_checkpoint_of_another_configuration(planted, tmp_path):
    run_training(_spec(planted, **{"optim.epochs": 1}), report=Recorder(keep=tmp_path))
    with pytest.raises(ValueError, match="another trial configuration"):
        run_training(_spec(planted, **{"optim.epochs": 1, "optim.lr": 0.001}), report=Recorder(),
                     resume_checkpoint=tmp_path / "epoch-1")


def test_training_reads_signals_of_train_and_val_records_only(planted, monkeypatch):
    read_rows: set[int] = set()
    original = PreparedDataset.window

    def spying_window(self, row, start, length):
        read_rows.add(int(row))
        return original(self, row, start, length)

    monkeypatch.setattr(PreparedDataset, "window", spying_window)
    monkeypatch.setattr(PreparedDataset, "signal", lambda self, row: pytest.fail("whole-record read"))
    run_training(_spec(planted, **{"optim.epochs": 1}), report=Recorder())
    folds, _ = read_folds(planted, "lodo")
    splits = fold_records(folds, FOLD)
    dataset = PreparedDataset(planted)
    assert read_rows == set(dataset.index_of(splits["train"] + splits["val"]).tolist())
    assert not read_rows & set(dataset.index_of(splits["test"]).tolist())


def test_predict_scores_any_records_with_the_checkpoints_thresholds(planted, tmp_path):
    run_training(_spec(planted), report=Recorder(keep=tmp_path))
    test_ids = fold_records(read_folds(planted, "lodo")[0], FOLD)["test"]
    ids, probs, thresholds = predict(tmp_path / "epoch-2", planted, test_ids, batch_size=16)
    assert ids == test_ids and probs.shape == (len(test_ids), len(CLASSES))
    assert ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_array_equal(thresholds, load_checkpoint(tmp_path / "epoch-2")["thresholds"].numpy())
    labels = PreparedDataset(planted).labels(CLASSES)[PreparedDataset(planted).index_of(test_ids)]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, probs, average="macro") >= 0.7  # the held-out domain


class LoaderSpy(DataLoader):
    """The loop's DataLoader, noting the processes each of its iterations loads in."""

    loaders: list[set[int]] = []  # per iteration: the pids that load its batches

    def _get_iterator(self):
        iterator = super()._get_iterator()
        # A loader with workers fetches every batch from its worker processes (torch keeps them
        # in `_workers`); without, this process loads them itself.
        LoaderSpy.loaders.append({w.pid for w in getattr(iterator, "_workers", [])} or {os.getpid()})
        return iterator


@pytest.mark.slow
def test_loader_processes_leave_a_run_unchanged(planted, monkeypatch):
    monkeypatch.setattr(loop, "DataLoader", LoaderSpy)
    in_process, with_loaders = Recorder(), Recorder()

    monkeypatch.setattr(LoaderSpy, "loaders", [])
    run_training(_spec(planted, **{"optim.epochs": 1}), report=in_process)
    assert LoaderSpy.loaders and all(pids == {os.getpid()} for pids in LoaderSpy.loaders)

    monkeypatch.setattr(LoaderSpy, "loaders", [])
    run_training(_spec(planted, **{"optim.epochs": 1}), report=with_loaders, loader_workers=1)
    assert len(LoaderSpy.loaders) >= 2  # the training and the validation loader
    assert all(len(pids) == 1 and os.getpid() not in pids for pids in LoaderSpy.loaders)

    assert _comparable(in_process.metrics) == _comparable(with_loaders.metrics)


def test_crossdomain_mixstyle_at_p_zero_still_trains_on_two_domain_batches(planted, monkeypatch):
    """The sampler follows mixstyle.mix alone (it once fell back to plain crops at p = 0).

    So a study's no-mixstyle arm, which sets p to 0, samples as every other arm does and
    changes MixStyle only.
    """
    seen: list[int] = []  # domains per batch the loop drew
    draw = TwoDomainBatchSampler.__iter__

    def spying_iter(self):
        for batch in draw(self):
            seen.append(len({int(self.domains[i]) for i, _ in batch}))
            yield batch

    monkeypatch.setattr(TwoDomainBatchSampler, "__iter__", spying_iter)
    recorder = Recorder()
    run_training(_spec(planted, **{"optim.epochs": 1, "mixstyle.mix": "crossdomain", "mixstyle.p": 0.0}),
                 report=recorder)
    assert recorder.metrics[0]["epoch"] == 1
    # The two training domains are near equal: every batch pairs them, bar an odd half-batch.
    assert len(seen) > 0 and seen.count(2) >= len(seen) - 1


def test_worker_cpus_share_what_the_driver_token_leaves_and_never_overcommit():
    from heartbeatai.training.ray_train import DRIVER_CPU, worker_cpus

    assert worker_cpus(2, 2) == pytest.approx(0.995)
    assert worker_cpus(2, 1) == pytest.approx(1.99)
    for available, workers in ((2, 3), (16, 6), (7.5, 4)):
        assert workers * worker_cpus(available, workers) + DRIVER_CPU <= available
    with pytest.raises(ValueError, match="cannot fit"):
        worker_cpus(0.01, 1)


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    import random

    from heartbeatai.training.checkpoint import capture_rng, restore_rng, save_checkpoint, seed_everything

    seed_everything(5)
    save_checkpoint(tmp_path, {"rng": [capture_rng()]})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(6)
    restore_rng(load_checkpoint(tmp_path)["rng"][0])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_a_selection_metric_the_run_does_not_report_is_refused_before_training(planted):
    with pytest.raises(ValueError, match="selection_metric"):
        TrainSpec(trial=tiny_trial(), data_path=str(planted), fold_id=FOLD, classes=CLASSES,
                  selection_metric="macro_auroc")
