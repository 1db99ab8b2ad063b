"""The Ray Train edge of a run: the worker function, the trainer, and the CPU shares.

The worker function is `loop.run_training` plus Ray's three calls (get_checkpoint,
report, the device), as in Ray's own examples; everything else about a run is plain
PyTorch. torch and Ray are imported inside the functions, so the study's resource
planning imports this module without either.

CPU requests (DESIGN.md, Ray on this platform): with Ray's default requests a small
machine deadlocks: a Tune trial's driver holds a whole CPU and its Train workers never
get scheduled (WorkerGroupStartupTimeoutError, retried forever). The driver therefore
asks for a token CPU and the workers share the rest. Computed from what the cluster
reports, never hard-coded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from heartbeatai.metric_names import metric_mode
from heartbeatai.training.spec import TrainSpec

log = logging.getLogger(__name__)

DRIVER_CPU = 0.01
# Ray accounts fractional resources in units of 1e-4; rounding down keeps the sum of
# the requests within capacity.
_RESOURCE_QUANTUM = 1e-4


def worker_cpus(available_cpus: float, workers: int, *, driver_cpu: float = DRIVER_CPU) -> float:
    """CPUs each of `workers` Train workers asks for: (available - driver token) / workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    share = (available_cpus - driver_cpu) / workers
    share = math.floor(share / _RESOURCE_QUANTUM + 1e-6) * _RESOURCE_QUANTUM
    if share <= 0:
        raise ValueError(
            f"{workers} worker(s) cannot fit in {available_cpus:g} CPUs beside the {driver_cpu:g}-CPU driver"
        )
    return round(share, 4)


def cluster_totals() -> dict[str, float]:
    """{"CPU": ..., "GPU": ...} in all of the connected Ray cluster now (ray.init must have run); the
    study sizes trials from resources.cluster_capacity, the cluster at its largest."""
    import ray

    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0.0)), "GPU": float(resources.get("GPU", 0.0))}


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: `run_training` with Ray's checkpoint and report."""
    import ray.train
    import ray.train.torch

    from heartbeatai.training.loop import format_progress, run_training

    spec = TrainSpec.from_dict(loop_config)
    rank = ray.train.get_context().get_world_rank()
    # Where the trial trained (rank 0's node): the trials table keeps it, so a multi-node study
    # can be seen spread over its nodes.
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report({**metrics, "node_id": node_id}, checkpoint=checkpoint)
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

    if cpus_per_worker is None:
        cpus_per_worker = worker_cpus(cluster_totals()["CPU"], workers)
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
