"""Test time: a checkpoint's scores on any records, with the thresholds it was tuned with.

Everything the prediction needs (config, classes, sampling rate, thresholds) comes
from the checkpoint itself, so a results store's checkpoint scores a new dataset with
no run file beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from heartbeatai.config import TrialConfig
from heartbeatai.data.prepared import DEMOGRAPHICS_ENCODING, PreparedDataset
from heartbeatai.training.batches import SlidingWindowDataset, max_aggregate, record_set
from heartbeatai.training.checkpoint import CheckpointError, check_trained_state, checkpoint_trial, load_checkpoint
from heartbeatai.training.factory import model_from_config, signal_transform, window_lengths
from heartbeatai.training.loop import default_loader_workers, loader_options, window_logits


def predict(
    checkpoint_dir: str | Path,
    data_path: str | Path,
    record_ids: list[str],
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(record_ids, probabilities (N, C), thresholds (C,)) of a checkpoint on any records."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, state, trial = load_trained_model(checkpoint_dir, device)
    dataset = PreparedDataset(data_path)
    if int(dataset.fs) != int(state["fs"]):
        raise ValueError(f"{data_path} is prepared at {dataset.fs} Hz, the model was trained at {state['fs']} Hz")
    records = record_set(
        dataset, record_ids, state["classes"], demographics=trial.model.demographics, domain_ids={}
    )
    crop_len, stride = window_lengths(trial, dataset.fs)
    windows = SlidingWindowDataset(dataset, records, crop_len, stride, signal_transform(trial, dataset.fs))
    loader = DataLoader(windows, batch_size=batch_size, **loader_options(default_loader_workers(device), device))
    window_record, logits = window_logits(model, loader, device)
    logits = max_aggregate(window_record, logits, len(records))
    return list(record_ids), 1.0 / (1.0 + np.exp(-logits)), state["thresholds"].numpy()


class TrainedModel(NamedTuple):
    model: torch.nn.Module  # in eval mode, on the device asked for
    state: dict  # the checkpoint as loaded
    trial: TrialConfig  # the configuration it was trained with


def load_trained_model(checkpoint_dir: str | Path, device: torch.device) -> TrainedModel:
    """The checkpoint's model, state and trial configuration. CheckpointError (one line)
    when the file is not a checkpoint whose config and weights fit."""
    state = load_checkpoint(checkpoint_dir)
    check_trained_state(state, checkpoint_dir)
    trial = checkpoint_trial(state, checkpoint_dir)
    if trial.model.demographics and state.get("demographics_encoding") != DEMOGRAPHICS_ENCODING:
        raise CheckpointError(f"{checkpoint_dir}: the model reads age and sex as "
                              f"{state.get('demographics_encoding', 'age/100, sex, age known')!r}, this installation "
                              f"gives them as {DEMOGRAPHICS_ENCODING!r}: retrain it")
    model = model_from_config(trial, len(state["classes"]))
    weights = state["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CheckpointError(f"{checkpoint_dir}: the checkpoint's weights are not a state dict of tensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        expected = set(model.state_dict())
        missing, unexpected = len(expected - set(weights)), len(set(weights) - expected)
        detail = f"{missing} missing and {unexpected} unexpected keys" if missing or unexpected else "tensor shapes differ"
        raise CheckpointError(f"{checkpoint_dir}: the checkpoint's weights do not fit the model its config "
                              f"describes ({detail})") from None
    return TrainedModel(model.to(device).eval(), state, trial)

