"""A stage runner that does not train: FakeStageRunner's Tune with planted epochs, and no torch.

The policy's tests need what Tune does with trials (TPE, ASHA, experiment state, resume,
interrupts, kills, retries; fake_stage_runner.py keeps all of it), not what training finds.
`PlantedStageRunner` is that same runner with one trial's epochs planted instead of trained:
each epoch scores the fold's validation records with a `PlantedModel`, tunes thresholds and
reports the metrics exactly as the training loop does (heartbeatai.metrics), and keeps a small
JSON file as the epoch's checkpoint. Its `checkpoints` reader scores any records from that
file the same way, so a study's tested runs, arms, analysis and record views get written.

A planted model's score of a record is its label pulled apart by the model's skill plus noise
drawn from the record's id: the same record gets the same score in validation and at test,
and every value is a pure function of (fold, configuration, seed, epoch). Skill comes from a
hash of the configuration without its seed, so every sampled value and every arm's override
moves it, and grows with the epoch; the noise has a part drawn afresh each epoch, so learning
curves wobble and the best checkpoint is not always the last.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from heartbeatai.config import TrialConfig, trial_from_plain
from heartbeatai.metric_names import EPOCH_FOLD_METRICS
from heartbeatai.study.stage_runner import FoldContext
from heartbeatai.testing.fake_stage_runner import FakeStageRunner, Report

CHECKPOINT_FILE = "planted_checkpoint.json"


@dataclass(frozen=True)
class PlantedModel:
    """What a trial would have learnt by `epoch`, planted: a pure function of its inputs."""

    fold_id: str
    config: Mapping[str, Any]  # the trial's TrialConfig as JSON, seed included
    epoch: int

    @property
    def skill(self) -> float:
        """In [0.2, 1.0): the configuration's worth, the same for every seed."""
        return 0.2 + 0.8 * _unit("skill", self.fold_id, {k: v for k, v in self.config.items() if k != "seed"})

    def probabilities(self, record_ids: Sequence[str], labels: np.ndarray) -> np.ndarray:
        """(N, C) scores of the records, whose (N, C) labels the model separates by its skill."""
        strength = 2.5 * self.skill * (1.0 - 0.6 ** self.epoch)
        kept = _record_noise(("kept", self.fold_id, self.config), record_ids, labels.shape[1])
        fresh = _record_noise(("epoch", self.fold_id, self.config, self.epoch), record_ids, labels.shape[1])
        logits = strength * (2.0 * labels - 1.0) + 0.8 * kept + 0.6 * fresh - 0.5
        return 1.0 / (1.0 + np.exp(-logits))

    def train_loss(self) -> float:
        return 0.7 * (1.0 - 0.5 * self.skill * (1.0 - 0.6 ** self.epoch))


def plant_trial(trial: TrialConfig, context: FoldContext, report: Report, resume: Path | None) -> None:
    """A `TrainTrial` (fake_stage_runner.py): the trial's epochs from `resume` on, planted."""
    from heartbeatai.metrics import evaluate_predictions, tune_thresholds

    config = trial.model_dump(mode="json")
    start = _read_checkpoint(resume)["epoch"] if resume is not None else 0
    val_ids, val_labels, train_prevalence = _validation(context)
    for epoch in range(start + 1, trial.optim.epochs + 1):
        started = time.perf_counter()
        model = PlantedModel(context.fold_id, config, epoch)
        probs = model.probabilities(val_ids, val_labels)
        thresholds = tune_thresholds(val_labels, probs, train_prevalence)
        macro = evaluate_predictions(val_labels, probs, thresholds, list(context.classes)).macro
        metrics = {
            "epoch": epoch,
            "train_loss": model.train_loss(),
            "val_loss": _bce(val_labels, probs),
            **{f"val_{name}": macro[name] for name in EPOCH_FOLD_METRICS},
            "val_classes_used": len(macro["classes_used"]),
            "epoch_seconds": time.perf_counter() - started,
            "precision": "fp32",  # no network: numpy computes the planted model in float64
        }
        with tempfile.TemporaryDirectory(prefix="planted-checkpoint-") as staging:
            (Path(staging) / CHECKPOINT_FILE).write_text(json.dumps({
                "fold_id": context.fold_id, "config": config, "epoch": epoch, "classes": list(context.classes),
                "thresholds": [float(t) for t in thresholds],
            }))
            report(metrics, Path(staging))


class PlantedCheckpoints:
    """The fold runner's reader of planted checkpoints (fold_runner.CheckpointReader)."""

    def predict(self, checkpoint: str, data_path: Path, record_ids: list[str]):
        from heartbeatai.data.prepared import PreparedDataset

        state = _read_checkpoint(Path(checkpoint))
        dataset = PreparedDataset(data_path)
        labels = dataset.labels(state["classes"])[dataset.index_of(record_ids)]
        model = PlantedModel(state["fold_id"], state["config"], state["epoch"])
        return list(record_ids), model.probabilities(record_ids, labels), np.asarray(state["thresholds"])

    def explainer(self, checkpoint: str, dataset) -> "PlantedExplainer":
        return PlantedExplainer(trial_from_plain(_read_checkpoint(Path(checkpoint))["config"]))


class PlantedExplainer:
    """Attributions planted on the signal itself: its magnitude, weighted per lead by the class."""

    def __init__(self, trial: TrialConfig):
        from heartbeatai.study.record_views import VIEW_SECONDS

        self.excerpt_seconds = min(trial.preprocess.crop_seconds, VIEW_SECONDS)

    def explain(self, excerpt: np.ndarray, row: int, class_index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        weights = np.array([_unit("lead", class_index, lead) for lead in range(excerpt.shape[0])])
        return np.abs(excerpt) * weights[:, None], {}


class PlantedStageRunner(FakeStageRunner):
    """FakeStageRunner (same faults: kill_after_epochs, interrupt_after_epochs, erroring_trials)
    whose trials plant their epochs; a study run with it reads its checkpoints with `checkpoints`."""

    checkpoints = PlantedCheckpoints()

    def __init__(self, root, **faults):
        super().__init__(root, train=plant_trial, **faults)


def _validation(context: FoldContext) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The fold's validation ids and labels, and the training prevalence, as the training loop has them."""
    from heartbeatai.data.folds import folds_path
    from heartbeatai.data.prepared import RECORDS_FILE

    # Files rewritten in place (a test writing other folds) are read again.
    written = tuple(os.stat(f).st_mtime_ns for f in (folds_path(context.data_path, context.protocol),
                                                     Path(context.data_path) / RECORDS_FILE))
    return _fold_labels(context.data_path, context.protocol, context.fold_id, tuple(context.classes), written)


@functools.lru_cache(maxsize=8)
def _fold_labels(data_path: str, protocol: str, fold_id: str, classes: tuple[str, ...], written: tuple[int, ...]):
    # Read once per fold, not per trial: reading them costs more than planting the epochs.
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.data.prepared import PreparedDataset

    dataset = PreparedDataset(data_path)
    splits = fold_records(read_folds(data_path, protocol)[0], fold_id)
    labels = dataset.labels(list(classes))
    train = labels[dataset.index_of(splits["train"])]
    return list(splits["val"]), labels[dataset.index_of(splits["val"])], train.mean(axis=0)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return json.loads((path / CHECKPOINT_FILE).read_text())


def _bce(labels: np.ndarray, probs: np.ndarray) -> float:
    y, p = labels.astype(float), np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _digest(*parts: Any) -> bytes:
    # sha256 of sorted JSON, not hash(): Python salts that per process, and reruns must repeat.
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def _unit(*parts: Any) -> float:
    """A planted uniform number in [0, 1) named by `parts`."""
    return int.from_bytes(_digest(*parts)[:8], "big") / 2.0 ** 64


def _record_noise(key: Any, record_ids: Sequence[str], classes: int) -> np.ndarray:
    """(N, classes) standard normal draws, each record's from its own id and `key` alone."""
    base = _digest(key)
    seeds = [int.from_bytes(hashlib.sha256(base + r.encode()).digest()[:16], "big") for r in record_ids]
    return np.array([np.random.default_rng(s).standard_normal(classes) for s in seeds]).reshape(-1, classes)
