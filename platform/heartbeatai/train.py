"""One training run: the plain-PyTorch loop, its Ray Train wrapper, and test-time prediction.

`run_training` is the whole loop. It runs directly in the calling process for a
one-worker run, or as the body of `train_loop_per_worker` under a Ray Train
TorchTrainer, where Ray has already set up the process group (gloo on CPU, NCCL on
GPU); the loop only asks torch.distributed for its rank. Ray stays at the edges:
`train_loop_per_worker` turns Ray's checkpoint into a directory and `report` into
`ray.train.report`, `fit_with_ray_train` builds the trainer.

The loop reads only the train and validation records of its fold; the test split
is never opened here (the study tests this by patching `PreparedDataset`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from heartbeatai.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, seed_everything
from heartbeatai.config import TrialConfig, fold_protocol
from heartbeatai.data.folds import fold_records, read_folds
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.losses import build_loss
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC, FOLD_METRICS, VALIDATION_METRICS, metric_mode
from heartbeatai.metrics import evaluate_predictions, tune_thresholds
from heartbeatai.model import build_model
from heartbeatai.preprocess import SignalTransform
from heartbeatai.windows import (
    CropDataset,
    CropSampler,
    RecordSet,
    SlidingWindowDataset,
    TwoDomainBatchSampler,
    max_aggregate,
    record_set,
)

log = logging.getLogger(__name__)
Report = Callable[[dict[str, Any], "Path | None"], None]
N_DEMOGRAPHICS = 3  # PreparedDataset.demographics(): age/100, sex, age known
# Positive-class weights (negatives / positives) are capped: a class with a handful of
# training positives would otherwise dominate the loss.
_MAX_POS_WEIGHT = 100.0
@dataclass(frozen=True)
class TrainSpec:
    """What one run trains: a trial configuration on one fold of a prepared dataset."""

    trial: TrialConfig
    data_path: str
    fold_id: str
    classes: tuple[str, ...]
    selection_metric: str = DEFAULT_SELECTION_METRIC
    out_dir: str | None = None  # where checkpoints are staged before reporting (None: temp)
    protocol: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", fold_protocol(self.fold_id))
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes:
            raise ValueError("classes: a run needs at least one class")
        if self.selection_metric not in VALIDATION_METRICS:
            raise ValueError(
                f"selection_metric: {self.selection_metric!r} is not reported per epoch; "
                f"choose one of {', '.join(VALIDATION_METRICS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for Ray's train_loop_config and Tune's trial config."""
        return {
            "trial": self.trial.model_dump(mode="json"),
            "data_path": str(self.data_path),
            "fold_id": self.fold_id,
            "classes": list(self.classes),
            "selection_metric": self.selection_metric,
            "out_dir": self.out_dir,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSpec:
        fields = {k: v for k, v in raw.items() if k != "trial"}
        return cls(trial=TrialConfig.model_validate(raw["trial"]), **fields)


def model_from_config(trial: TrialConfig, n_classes: int) -> torch.nn.Module:
    m, mix = trial.model, trial.mixstyle
    return build_model(
        n_classes,
        stem_width=m.stem_width,
        widths=m.widths,
        depths=m.depths,
        stem_kernel=m.stem_kernel,
        kernel=m.kernel,
        se=m.se,
        se_reduction=m.se_reduction,
        dropout=m.dropout,
        concentration=m.concentration,
        concentration_stages=m.concentration_stages,
        demographics=N_DEMOGRAPHICS if m.demographics else 0,
        mixstyle_p=mix.p,
        mixstyle_alpha=mix.alpha,
        mixstyle_layers=mix.layers,
        mixstyle_mix=mix.mix,
    )


def signal_transform(trial: TrialConfig, fs: float) -> SignalTransform:
    pre = trial.preprocess
    return SignalTransform(
        fs, bandpass_low_hz=pre.bandpass_low_hz, bandpass_high_hz=pre.bandpass_high_hz, normalize=pre.normalize
    )


def format_progress(metrics: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {metrics['epoch']}/{epochs}  train_loss {metrics['train_loss']:.4f}  "
        f"val_loss {metrics['val_loss']:.4f}  val_macro_auroc {metrics['val_macro_auroc']:.3f}  "
        f"val_macro_f1 {metrics['val_macro_f1']:.3f}  val_challenge_score {metrics['val_challenge_score']:.3f}  "
        f"({metrics['epoch_seconds']:.1f}s)"
    )


# ---------------------------------------------------------------------------- the loop


def run_training(
    spec: TrainSpec,
    *,
    report: Report,
    resume_checkpoint: Path | None = None,
    device: torch.device | None = None,
    loader_workers: int | None = None,
) -> dict[str, Any]:
    """Train `spec` to its last epoch; return the last epoch's metrics.

    Every rank calls `report(metrics, checkpoint_dir)` once per epoch with the same
    metrics (bar its own epoch_seconds); rank 0 passes the directory of that epoch's checkpoint (valid only
    during the call), the others None. `loader_workers` defaults to none on CPU
    (the cores are busy with the model) and to the spare cores on GPU, where
    reading and filtering crops would otherwise starve it.
    """
    trial = spec.trial
    rank, world = _rank_and_world()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if loader_workers is None:
        loader_workers = default_loader_workers(device)
    loading = _loader_options(loader_workers, device)
    seed_everything(trial.seed * 1000 + rank)

    dataset = PreparedDataset(spec.data_path)
    train_set, val_set = _fold_record_sets(dataset, spec)
    transform = signal_transform(trial, dataset.fs)
    crop_len = max(1, round(trial.preprocess.crop_seconds * dataset.fs))
    stride = max(1, round(trial.preprocess.eval_stride_seconds * dataset.fs))
    batch = trial.optim.batch_size // world
    if batch < 1:
        raise ValueError(f"optim.batch_size: {trial.optim.batch_size} is smaller than the {world} workers")

    train_loader, sampler = _train_loader(dataset, train_set, trial, crop_len, batch, transform, rank, world, loading)
    val_windows = SlidingWindowDataset(dataset, val_set, crop_len, stride, transform)
    # Each rank scores the windows of its share of validation records; rank order of
    # the gathered results does not matter since windows carry their record index.
    val_loader = DataLoader(
        Subset(val_windows, np.flatnonzero(val_windows.window_record % world == rank).tolist()),
        batch_size=batch,
        shuffle=False,
        **loading,
    )

    model = model_from_config(trial, len(spec.classes)).to(device)
    loss_fn = _loss(trial, train_set.labels).to(device)
    optimizer = _optimizer(model, trial)
    steps_per_epoch = len(train_loader)
    scheduler = _scheduler(optimizer, trial, steps_per_epoch)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume_checkpoint is not None:
        state = load_checkpoint(resume_checkpoint)
        _check_resumable(state, spec)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        if len(state["rng"]) == world:
            restore_rng(state["rng"][rank])
        else:  # resumed on another worker count: exact repetition is moot, stay seeded
            seed_everything(trial.seed * 1000 + rank + 7919 * state["epoch"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
    net = _distributed(model, device) if world > 1 else model

    for epoch in range(start_epoch, trial.optim.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(net, train_loader, loss_fn, optimizer, scheduler, device)
        val_metrics, thresholds = _validate(model, val_loader, val_set, loss_fn, spec.classes, device, world)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            **val_metrics,
            "epoch_seconds": time.perf_counter() - started,
        }
        history.append(metrics)
        rng_states = _gather(capture_rng(), world)
        if rank != 0:
            report(metrics, None)
            continue
        with tempfile.TemporaryDirectory(dir=_staging_dir(spec), prefix="checkpoint-") as staging:
            save_checkpoint(
                staging,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "sampler": {**sampler.state_dict(), "epoch": epoch + 1},
                    "rng": rng_states,
                    "thresholds": torch.from_numpy(thresholds),
                    "config": trial.model_dump(mode="json"),
                    "classes": list(spec.classes),
                    "fold_id": spec.fold_id,
                    "data_fingerprint": dataset.fingerprint,
                    "fs": int(dataset.fs),
                    "history": history,
                },
            )
            report(metrics, Path(staging))
    return history[-1] if history else {}


def default_loader_workers(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    # Ray sets this process's thread count from the CPUs the worker was given.
    return max(1, min(8, torch.get_num_threads() - 1))


def _loader_options(workers: int, device: torch.device) -> dict[str, Any]:
    if workers == 0:
        return {}
    # forkserver, not fork: a Ray worker runs gRPC threads that a forked child would
    # inherit in whatever state they were. Items are pure functions of the sampler's
    # (record, start) pairs, so loader processes leave runs repeatable.
    return {
        "num_workers": workers,
        "persistent_workers": True,
        "multiprocessing_context": "forkserver",
        "pin_memory": device.type == "cuda",
    }


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _staging_dir(spec: TrainSpec) -> str | None:
    if spec.out_dir is None:
        return None
    Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
    return spec.out_dir


def _fold_record_sets(dataset: PreparedDataset, spec: TrainSpec) -> tuple[RecordSet, RecordSet]:
    folds, _ = read_folds(spec.data_path, spec.protocol)
    splits = fold_records(folds, spec.fold_id)
    train_ids, val_ids = splits["train"], splits["val"]
    if not train_ids or not val_ids:
        raise ValueError(f"fold {spec.fold_id} has {len(train_ids)} train and {len(val_ids)} val records")
    train_domains = dataset.records.iloc[dataset.index_of(train_ids)]["domain"]
    domain_ids = {d: i for i, d in enumerate(sorted(set(train_domains)))}
    demographics = spec.trial.model.demographics
    common = {"demographics": demographics, "domain_ids": domain_ids}
    return (
        record_set(dataset, train_ids, spec.classes, **common),
        record_set(dataset, val_ids, spec.classes, **common),
    )


def _train_loader(
    dataset: PreparedDataset,
    records: RecordSet,
    trial: TrialConfig,
    crop_len: int,
    batch: int,
    transform: SignalTransform,
    rank: int,
    world: int,
    loading: dict[str, Any],
) -> tuple[DataLoader, CropSampler | TwoDomainBatchSampler]:
    """The training loader and its checkpointable sampler."""
    crops = CropDataset(dataset, records, crop_len, transform)
    shard = {"seed": trial.seed, "num_replicas": world, "rank": rank}
    if trial.mixstyle.mix == "crossdomain" and trial.mixstyle.p > 0:
        batches = TwoDomainBatchSampler(records.domains, records.lengths, crop_len, batch, **shard)
        return DataLoader(crops, batch_sampler=batches, **loading), batches
    # A short last batch is kept: batch-norm over (batch x time) works with one record.
    sampler = CropSampler(records.lengths, crop_len, **shard)
    return DataLoader(crops, sampler=sampler, batch_size=batch, **loading), sampler


def _loss(trial: TrialConfig, train_labels: np.ndarray) -> torch.nn.Module:
    loss = trial.loss
    pos_weight = None
    if loss.pos_weight:
        positives = train_labels.sum(axis=0)
        ratio = (len(train_labels) - positives) / np.maximum(positives, 1.0)
        pos_weight = torch.from_numpy(np.clip(ratio, 1.0, _MAX_POS_WEIGHT).astype(np.float32))
    return build_loss(
        loss.kind,
        label_smoothing=trial.label_smoothing,
        pos_weight=pos_weight,
        focal_gamma=loss.focal_gamma,
        focal_alpha=loss.focal_alpha,
        asl_gamma_neg=loss.asl_gamma_neg,
        asl_gamma_pos=loss.asl_gamma_pos,
        asl_clip=loss.asl_clip,
    )


def _optimizer(model: torch.nn.Module, trial: TrialConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation scales (the usual AdamW practice):
    # decaying a batch-norm gain only fights the normalisation.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": trial.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=trial.optim.lr)


def _scheduler(optimizer: torch.optim.Optimizer, trial: TrialConfig, steps_per_epoch: int):
    total = trial.optim.epochs * steps_per_epoch
    if trial.optim.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=trial.optim.lr, total_steps=total)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def _distributed(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _check_resumable(state: dict[str, Any], spec: TrainSpec) -> None:
    if list(state["classes"]) != list(spec.classes) or state["fold_id"] != spec.fold_id:
        raise ValueError(
            f"checkpoint is for fold {state['fold_id']} with classes {state['classes']}, "
            f"not fold {spec.fold_id} with {list(spec.classes)}"
        )
    if TrialConfig.model_validate(state["config"]) != spec.trial:
        raise ValueError("checkpoint was trained with another trial configuration")


def _autocast(device: torch.device):
    # bf16 on GPU; on CPU fp32 until benchmarks/ shows bf16 pays at equal accuracy.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _batch_inputs(batch: dict[str, torch.Tensor], device: torch.device):
    x = batch["x"].to(device, non_blocking=True)
    demographics = batch.get("demographics")
    if demographics is not None:
        demographics = demographics.to(device, non_blocking=True)
    return x, demographics, batch["domain"].to(device, non_blocking=True)


def _train_epoch(net, loader, loss_fn, optimizer, scheduler, device) -> float:
    net.train()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, items
    for batch in loader:
        x, demographics, domains = _batch_inputs(batch, device)
        y = batch["y"].to(device, non_blocking=True)
        with _autocast(device):
            logits = net(x, demographics, domains)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += torch.stack([loss.detach().double() * len(y), torch.tensor(len(y), device=device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    return float(total[0] / total[1])


@torch.no_grad()
def _window_logits(model, loader: Iterable, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(window record index, window logits) over a loader of sliding windows."""
    model.eval()
    records, logits = [], []
    for batch in loader:
        x, demographics, _ = _batch_inputs(batch, device)
        with _autocast(device):
            out = model(x, demographics, None)
        records.append(batch["record"].numpy())
        logits.append(out.float().cpu().numpy())
    if not records:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate(records), np.concatenate(logits)


def _validate(model, loader, records: RecordSet, loss_fn, classes, device, world) -> tuple[dict, np.ndarray]:
    """Validation metrics and F1-tuned thresholds, identical on every rank.

    Scores are per record: the maximum logit over its windows, gathered from all ranks.
    """
    window_record, window_logits = _window_logits(model, loader, device)
    parts = _gather((window_record, window_logits), world)
    window_record = np.concatenate([p[0] for p in parts])
    window_logits = np.concatenate([p[1] for p in parts if len(p[0])])
    logits = max_aggregate(window_record, window_logits, len(records))
    labels = records.labels
    loss = float(loss_fn(torch.from_numpy(logits).to(device), torch.from_numpy(labels).to(device)))
    probs = 1.0 / (1.0 + np.exp(-logits))
    thresholds = tune_thresholds(labels, probs)
    macro = evaluate_predictions(labels, probs, thresholds, classes).macro
    metrics = {
        "val_loss": loss,
        **{f"val_{name}": macro[name] for name in FOLD_METRICS},
        "val_classes_used": len(macro["classes_used"]),
    }
    return metrics, thresholds


# ----------------------------------------------------------------------- test time


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
    model, state = load_trained_model(checkpoint_dir, device)
    trial = TrialConfig.model_validate(state["config"])
    dataset = PreparedDataset(data_path)
    if int(dataset.fs) != int(state["fs"]):
        raise ValueError(f"{data_path} is prepared at {dataset.fs} Hz, the model was trained at {state['fs']} Hz")
    records = record_set(
        dataset, record_ids, state["classes"], demographics=trial.model.demographics, domain_ids={}
    )
    crop_len = max(1, round(trial.preprocess.crop_seconds * dataset.fs))
    stride = max(1, round(trial.preprocess.eval_stride_seconds * dataset.fs))
    windows = SlidingWindowDataset(dataset, records, crop_len, stride, signal_transform(trial, dataset.fs))
    loader = DataLoader(windows, batch_size=batch_size, **_loader_options(default_loader_workers(device), device))
    window_record, logits = _window_logits(model, loader, device)
    logits = max_aggregate(window_record, logits, len(records))
    return list(record_ids), 1.0 / (1.0 + np.exp(-logits)), state["thresholds"].numpy()


def load_trained_model(checkpoint_dir: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's model in eval mode on `device`, and the checkpoint state."""
    state = load_checkpoint(checkpoint_dir)
    trial = TrialConfig.model_validate(state["config"])
    model = model_from_config(trial, len(state["classes"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


# --------------------------------------------------------------------------- Ray Train


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: `run_training` with Ray's checkpoint and report."""
    import ray.train
    import ray.train.torch

    spec = TrainSpec.from_dict(loop_config)
    rank = ray.train.get_context().get_world_rank()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)
        if rank == 0:
            # A logger, not print: Ray Train's patched print emits each line twice.
            log.info(format_progress(metrics, spec.trial.optim.epochs))

    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        run_training(spec, report=report, device=device)
        return
    with checkpoint.as_directory() as directory:
        run_training(spec, report=report, resume_checkpoint=Path(directory), device=device)


def fit_with_ray_train(
    spec: TrainSpec,
    *,
    workers: int,
    gpus_per_worker: float = 0,
    cpus_per_worker: float | None = None,
    storage_path: str | Path,
    name: str,
    max_failures: int = 2,
    callbacks: Iterable[Any] = (),
    train_loop: Callable[[dict[str, Any]], None] = train_loop_per_worker,
):
    """Fit `spec` with a TorchTrainer of `workers` DDP workers; returns the ray.train.Result.

    Ray must be initialised. CPUs per worker default to DESIGN.md's share of the
    cluster: (available - driver token) / workers. The best checkpoint by the
    selection metric and the latest one (which Ray always keeps) survive.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from heartbeatai.ray_resources import cluster_capacity, worker_cpus

    if cpus_per_worker is None:
        cpus_per_worker = worker_cpus(cluster_capacity()["CPU"], workers)
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=spec.to_dict(),
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=bool(gpus_per_worker), resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=spec.selection_metric,
                checkpoint_score_order=metric_mode(spec.selection_metric),
            ),
            callbacks=list(callbacks),
        ),
    )
    return trainer.fit()
