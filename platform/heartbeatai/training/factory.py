"""The trial configuration -> the objects one run is made of.

Every field of the trial configuration that configures a module is mapped to it here
and nowhere else, so tests/test_factory.py can check that each field reaches its
module: the model, the signal transform, the window lengths, the training sampler, the
loss, the optimiser, the schedule and the training algorithm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from heartbeatai.config import TrialConfig
from heartbeatai.ecg import N_LEADS
from heartbeatai.losses.module import build_loss
from heartbeatai.model import build_model
from heartbeatai.training.algorithms import Algorithm, StepParts, build_algorithm
from heartbeatai.training.batches import CropSampler, TwoDomainBatchSampler
from heartbeatai.training.transforms import SignalTransform

N_DEMOGRAPHICS = 3  # PreparedDataset.demographics(): prepared.DEMOGRAPHICS_ENCODING
# Positive-class weights (negatives / positives) are capped: a class with a handful of
# training positives would otherwise dominate the loss.
_MAX_POS_WEIGHT = 100.0


def model_arguments(trial: TrialConfig, n_classes: int) -> dict[str, Any]:
    """`build_model`'s keyword arguments for `trial`: the one mapping of config to model.

    Plain data (JSON-able), so a process without the platform's config stack (the
    model benchmark's torch_ecg venv) can build the same network from it.
    """
    resolved = trial.resolved()
    m, mix = resolved.model, resolved.mixstyle
    return {
        "n_classes": n_classes,
        "in_leads": N_LEADS,
        "stem_width": m.stem_width,
        "widths": m.widths,
        "depths": m.depths,
        "stem_kernel": m.stem_kernel,
        "kernel": m.kernel,
        "se": m.se,
        "se_reduction": m.se_reduction,
        "dropout": m.dropout,
        "concentration": m.concentration,
        "concentration_stages": m.concentration_stages,
        "demographics": N_DEMOGRAPHICS if m.demographics else 0,
        "mixstyle_p": mix.p,
        "mixstyle_alpha": mix.alpha,
        "mixstyle_layers": mix.layers,
        "mixstyle_mix": mix.mix,
    }


def model_from_config(trial: TrialConfig, n_classes: int) -> torch.nn.Module:
    """The network of `trial` for `n_classes` labels."""
    return build_model(**model_arguments(trial, n_classes))


def signal_transform(trial: TrialConfig, fs: float) -> SignalTransform:
    pre = trial.preprocess
    return SignalTransform(
        fs, bandpass_low_hz=pre.bandpass_low_hz, bandpass_high_hz=pre.bandpass_high_hz, normalize=pre.normalize
    )


def window_lengths(trial: TrialConfig, fs: float) -> tuple[int, int]:
    """(crop, evaluation stride) in samples at `fs`: training crops and sliding windows."""
    pre = trial.preprocess
    return max(1, round(pre.crop_seconds * fs)), max(1, round(pre.eval_stride_seconds * fs))


def train_sampler(
    trial: TrialConfig,
    domains: np.ndarray,
    lengths: np.ndarray,
    crop_len: int,
    batch_size: int,
    *,
    num_replicas: int = 1,
    rank: int = 0,
) -> CropSampler | TwoDomainBatchSampler:
    """Two-domain batches under `mixstyle.mix: crossdomain`, whatever `mixstyle.p`; else crops.

    The sampler follows `mix` alone so that every arm of a study samples alike: the
    `no-mixstyle` arm sets p to 0, and if that also switched to plain shuffling the
    ablation would change which records share a batch as well as MixStyle.
    `batch_size` is per worker; the seed is the trial's.
    """
    shard = {"seed": trial.seed, "num_replicas": num_replicas, "rank": rank}
    if trial.mixstyle.mix == "crossdomain":
        return TwoDomainBatchSampler(domains, lengths, crop_len, batch_size, **shard)
    return CropSampler(lengths, crop_len, **shard)


def loss_from_config(trial: TrialConfig, train_labels: np.ndarray) -> torch.nn.Module:
    """The configured loss; class weights, when on, from the training labels (N, C)."""
    loss = trial.loss
    pos_weight = None
    if loss.pos_weight:
        positives = train_labels.sum(axis=0)
        ratio = (len(train_labels) - positives) / np.maximum(positives, 1.0)
        pos_weight = torch.from_numpy(np.clip(ratio, 1.0, _MAX_POS_WEIGHT).astype(np.float32))
    return build_loss(loss, label_smoothing=trial.label_smoothing, pos_weight=pos_weight)


def optimizer_from_config(model: torch.nn.Module, trial: TrialConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation scales (the usual AdamW practice):
    # decaying a batch-norm gain only fights the normalisation.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": trial.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=trial.optim.lr)


def scheduler_from_config(optimizer: torch.optim.Optimizer, trial: TrialConfig, steps_per_epoch: int):
    """Stepped once per batch, so the schedule spans every step of every epoch."""
    total = trial.optim.epochs * steps_per_epoch
    if trial.optim.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=trial.optim.lr, total_steps=total)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def algorithm_from_config(trial: TrialConfig, model: torch.nn.Module, network: torch.nn.Module,
                          loss: torch.nn.Module, *, steps_per_epoch: int, n_domains: int,
                          device: torch.device) -> Algorithm:
    """The configured algorithm around `model` (`network`: the same, DDP-wrapped when distributed),
    with the optimiser and per-batch schedule of `trial` over whatever it trains."""
    parts = StepParts(
        model=model, network=network, loss=loss, n_domains=n_domains, device=device,
        total_steps=trial.optim.epochs * steps_per_epoch,
        make_optimizer=lambda trainable: optimizer_from_config(trainable, trial),
        make_scheduler=lambda optimizer: scheduler_from_config(optimizer, trial, steps_per_epoch),
    )
    return build_algorithm(trial.algorithm, parts)
