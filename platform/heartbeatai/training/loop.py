"""The training loop: plain PyTorch, the same in-process and inside a Ray Train worker.

`run_training` runs directly in the calling process for a one-worker run, or as the
body of `ray_train.train_loop_per_worker`, where Ray has already set up the process
group (gloo on CPU, NCCL on GPU); the loop only asks torch.distributed for its rank.
Checkpoints and metrics leave through the `report` callback, so Ray stays at the edge.

The loop reads only the train and validation records of its fold; the test split is
never opened here (the study tests this by patching `PreparedDataset`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from heartbeatai.config import TrialConfig
from heartbeatai.data.folds import fold_records, read_folds
from heartbeatai.data.prepared import DEMOGRAPHICS_ENCODING, PreparedDataset
from heartbeatai.metric_names import EPOCH_FOLD_METRICS
from heartbeatai.metrics import evaluate_predictions, tune_thresholds
from heartbeatai.training.batches import (
    CropDataset,
    CropSampler,
    RecordSet,
    SlidingWindowDataset,
    TwoDomainBatchSampler,
    max_aggregate,
    record_set,
)
from heartbeatai.training.algorithms import Algorithm
from heartbeatai.training.checkpoint import (
    capture_rng, checkpoint_trial, load_checkpoint, restore_rng, save_checkpoint, seed_everything,
)
from heartbeatai.training.factory import (
    algorithm_from_config,
    loss_from_config,
    model_from_config,
    signal_transform,
    train_sampler,
    window_lengths,
)
from heartbeatai.training.precision import autocast, precision_used
from heartbeatai.training.spec import TrainSpec
from heartbeatai.training.transforms import SignalTransform

Report = Callable[[dict[str, Any], "Path | None"], None]


def format_progress(metrics: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {metrics['epoch']}/{epochs}  train_loss {metrics['train_loss']:.4f}  "
        f"val_loss {metrics['val_loss']:.4f}  val_macro_auroc {metrics['val_macro_auroc']:.3f}  "
        f"val_macro_f1 {metrics['val_macro_f1']:.3f}  val_challenge_score {metrics['val_challenge_score']:.3f}  "
        f"({metrics['epoch_seconds']:.1f}s)"
    )


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
    loading = loader_options(loader_workers, device)
    seed_everything(trial.seed * 1000 + rank)

    dataset = PreparedDataset(spec.data_path)
    train_set, val_set = _fold_record_sets(dataset, spec)
    transform = signal_transform(trial, dataset.fs)
    crop_len, stride = window_lengths(trial, dataset.fs)
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
    train_prevalence = train_set.labels.mean(axis=0)
    loss_fn = loss_from_config(trial, train_set.labels).to(device)
    net = _distributed(model, device) if world > 1 else model
    # Domain ids number the training domains only (_fold_record_sets): the held-out one has none.
    algorithm = algorithm_from_config(trial, model, net, loss_fn, steps_per_epoch=len(train_loader),
                                      n_domains=len(np.unique(train_set.domains)), device=device)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume_checkpoint is not None:
        state = load_checkpoint(resume_checkpoint)
        _check_resumable(state, spec)
        algorithm.restore(state)
        sampler.load_state_dict(state["sampler"])
        if len(state["rng"]) == world:
            restore_rng(state["rng"][rank])
        else:  # resumed on another worker count: exact repetition is moot, stay seeded
            seed_everything(trial.seed * 1000 + rank + 7919 * state["epoch"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])

    for epoch in range(start_epoch, trial.optim.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_scalars = _train_epoch(algorithm, train_loader, device)
        algorithm.before_validation(train_loader)  # e.g. batch-norm statistics of averaged weights
        val_metrics, thresholds = _validate(algorithm.predict_network(), val_loader, val_set, train_prevalence,
                                            loss_fn, spec.classes, device, world)
        metrics = {
            "epoch": epoch + 1,
            **{f"train_{name}": value for name, value in train_scalars.items()},
            **val_metrics,
            "epoch_seconds": time.perf_counter() - started,
            # The default depends on the machine (precision.py), so each run says what it used.
            "precision": precision_used(device.type),
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
                    **algorithm.checkpoint_state(),  # model (what predicts), optimiser, schedule, its own
                    "epoch": epoch + 1,
                    "sampler": {**sampler.state_dict(), "epoch": epoch + 1},
                    "rng": rng_states,
                    "thresholds": torch.from_numpy(thresholds),
                    "config": trial.model_dump(mode="json"),
                    "classes": list(spec.classes),
                    "fold_id": spec.fold_id,
                    "data_fingerprint": dataset.fingerprint,
                    "fs": int(dataset.fs),
                    "demographics_encoding": DEMOGRAPHICS_ENCODING,
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


def loader_options(workers: int, device: torch.device) -> dict[str, Any]:
    """DataLoader keywords for `workers` loader processes (none: load in this process)."""
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
    sampler = train_sampler(trial, records.domains, records.lengths, crop_len, batch, num_replicas=world, rank=rank)
    if isinstance(sampler, TwoDomainBatchSampler):
        return DataLoader(crops, batch_sampler=sampler, **loading), sampler
    # A short last batch is kept: batch-norm over (batch x time) works with one record.
    return DataLoader(crops, sampler=sampler, batch_size=batch, **loading), sampler


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
    # Compared as built: a checkpoint written before the stage lists defaulted to None
    # (with (1, 2, 3) spelt out) resumes under the equivalent default.
    if checkpoint_trial(state, "checkpoint").resolved() != spec.trial.resolved():
        raise ValueError("checkpoint was trained with another trial configuration")
    if spec.trial.model.demographics and state.get("demographics_encoding") != DEMOGRAPHICS_ENCODING:
        raise ValueError("checkpoint was trained on another encoding of age and sex")


def _on_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _train_epoch(algorithm: Algorithm, loader, device) -> dict[str, float]:
    """The algorithm's scalars (its objective as `loss` first), each averaged over the epoch's items."""
    algorithm.train()
    sums: dict[str, torch.Tensor] = {}
    items = torch.zeros((), dtype=torch.float64, device=device)
    for batch in loader:
        batch = _on_device(batch, device)
        n = len(batch["y"])
        for name, value in algorithm.update(batch).items():
            sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64, device=device)) + value.double() * n
        items += n
    total = torch.stack([*sums.values(), items])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    return {name: float(total[i] / total[-1]) for i, name in enumerate(sums)}


@torch.no_grad()
def window_logits(model, loader: Iterable, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(window record index, window logits) over a loader of sliding windows."""
    model.eval()
    records, logits = [], []
    for batch in loader:
        demographics = batch.get("demographics")
        with autocast(device):
            out = model(batch["x"].to(device, non_blocking=True),
                        None if demographics is None else demographics.to(device, non_blocking=True), None)
        records.append(batch["record"].numpy())
        logits.append(out.float().cpu().numpy())
    if not records:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate(records), np.concatenate(logits)


def _validate(model, loader, records: RecordSet, train_prevalence: np.ndarray, loss_fn, classes, device,
              world) -> tuple[dict, np.ndarray]:
    """Validation metrics and F1-tuned thresholds, identical on every rank.

    Scores are per record: the maximum logit over its windows, gathered from all ranks.
    """
    window_record, logits_per_window = window_logits(model, loader, device)
    parts = _gather((window_record, logits_per_window), world)
    window_record = np.concatenate([p[0] for p in parts])
    logits_per_window = np.concatenate([p[1] for p in parts if len(p[0])])
    logits = max_aggregate(window_record, logits_per_window, len(records))
    labels = records.labels
    loss = float(loss_fn(torch.from_numpy(logits).to(device), torch.from_numpy(labels).to(device)))
    probs = 1.0 / (1.0 + np.exp(-logits))
    thresholds = tune_thresholds(labels, probs, train_prevalence)
    macro = evaluate_predictions(labels, probs, thresholds, classes).macro
    metrics = {
        "val_loss": loss,
        **{f"val_{name}": macro[name] for name in EPOCH_FOLD_METRICS},
        "val_classes_used": len(macro["classes_used"]),
    }
    return metrics, thresholds
