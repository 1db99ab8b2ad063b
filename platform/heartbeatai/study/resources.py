"""What one trial asks of the cluster, and how many trials run at once (DESIGN.md, Study + Ray).

Tune only sees the resources of a trial's driver; a multi-worker trial's Ray Train workers
are requested later by the TorchTrainer it builds. Launching more trials than the workers
can find room for deadlocks (every driver holds resources, no worker group starts), so the
concurrency is computed here from the whole need of a trial and the cluster at its largest:
the bounds of the cluster's live autoscaler where there is one, else the resources present
now. A laptop with 2 CPUs and a 64-GPU cluster need no edit of the config.

The live autoscaler is asked, never a file that may be stale: on the head, the running
monitor of the connected cluster's GCS names the config it reads on its command line (`ray
up` puts it at ~/ray_bootstrap_config.yaml); elsewhere, the node groups an autoscaler reports
to the GCS (KubeRay). A leftover ray_bootstrap_config.yaml with no monitor behind it sizes
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

from heartbeatai.training.ray_train import DRIVER_CPU, worker_cpus


class ResourceError(ValueError):
    """A trial that can never fit the cluster."""


@dataclass(frozen=True)
class Capacity:
    """Totals over the cluster and the largest single node (a worker must fit on one node)."""

    total: Mapping[str, float]
    largest_node: Mapping[str, float]


@dataclass(frozen=True)
class TrialResources:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def in_process(self) -> bool:
        """One worker runs the loop in the trial process: no worker group, no DDP start-up."""
        return self.workers == 1

    def driver_request(self) -> dict[str, float]:
        """What `tune.with_resources` reserves for the trial process itself."""
        if self.in_process:
            return {"CPU": self.cpus_per_worker, "GPU": self.gpus_per_worker}
        return {"CPU": DRIVER_CPU, "GPU": 0.0}

    def worker_bundle(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, "GPU": self.gpus_per_worker}

    def total(self) -> dict[str, float]:
        if self.in_process:
            return self.driver_request()
        return {"CPU": DRIVER_CPU + self.workers * self.cpus_per_worker, "GPU": self.workers * self.gpus_per_worker}


def plan_trial_resources(
    workers: int, gpus_per_worker: float, cpus_per_worker: float | None, capacity: Capacity
) -> TrialResources:
    """Fill in CPUs per worker where the config leaves them out, then check the trial fits."""
    if cpus_per_worker is None:
        if workers == 1 or gpus_per_worker > 0:
            cpus_per_worker = 1.0
        else:
            # CPU-only DDP: the workers share one node's CPUs, less the driver's token.
            try:
                cpus_per_worker = worker_cpus(capacity.largest_node.get("CPU", 0.0), workers)
            except ValueError as err:
                raise ResourceError(str(err)) from None
    resources = TrialResources(workers, cpus_per_worker, gpus_per_worker)
    for name, need in resources.worker_bundle().items():
        if need > capacity.largest_node.get(name, 0.0) + 1e-9:
            raise ResourceError(
                f"a trial worker needs {need:g} {name} but the largest node has "
                f"{capacity.largest_node.get(name, 0.0):g}: lower resources.* or add such nodes"
            )
    max_concurrent_trials(resources, capacity)
    return resources


def max_concurrent_trials(resources: TrialResources, capacity: Capacity) -> int:
    """How many whole trials (driver and workers) the cluster holds at once; at least 1 or an error."""
    fits = min(
        math.floor((capacity.total.get(name, 0.0) + 1e-9) / need)
        for name, need in resources.total().items()
        if need > 0
    )
    if fits < 1:
        raise ResourceError(f"one trial needs {resources.total()} but the cluster offers at most {dict(capacity.total)}")
    return fits


def cluster_capacity() -> Capacity:
    """The cluster at its largest: the live autoscaler's bounds where one runs, else what Ray sees now."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    current = Capacity(
        total=dict(ray.cluster_resources()),
        largest_node=max(nodes, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)), default={}),
    )
    bounds = live_autoscaler_capacity()
    return _larger(current, bounds) if bounds is not None else current


def live_autoscaler_capacity() -> Capacity | None:
    """The bounds of the connected cluster's live autoscaler; None when none runs (or none is seen)."""
    try:
        import ray

        gcs_address = ray.get_runtime_context().gcs_address
    except Exception:
        return None
    path = launcher_config_path(gcs_address)
    if path is not None:
        try:
            return autoscaler_capacity(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError):
            return None
    try:  # KubeRay and other autoscalers report their node groups to the GCS
        from ray._private.state import state

        groups = state.get_cluster_config()
    except Exception:  # Ray's private state API moved: size from the resources present
        return None
    if groups is None or not groups.node_group_configs:
        return None
    return node_group_capacity([(dict(g.resources), g.max_count) for g in groups.node_group_configs],
                               dict(groups.max_resources))


def launcher_config_path(gcs_address: str, proc: Path = Path("/proc")) -> Path | None:
    """The config the cluster launcher's autoscaler of this GCS reads: found on the running monitor
    process's command line (`monitor.py --gcs-address=... --autoscaling-config=...`, autoscaler v1
    or v2), on the head, where `ray submit` and `ray job submit` run the driver."""
    wanted = f"--gcs-address={gcs_address}"
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if wanted in argv and any(a.endswith("monitor.py") for a in argv):
            for arg in argv:
                if arg.startswith("--autoscaling-config="):
                    return Path(arg.split("=", 1)[1]).expanduser()
    return None


def node_group_capacity(groups: list[tuple[Mapping[str, float], int]],
                        max_resources: Mapping[str, float] | None = None) -> Capacity | None:
    """Capacity of node groups (resources per node, max nodes; -1: unbounded) under a cluster cap."""
    total: dict[str, float] = {}
    largest: dict[str, float] = {}
    for resources, max_count in groups:
        count = math.inf if max_count == -1 else max_count
        if not count:
            continue
        for key, value in resources.items():
            total[key] = total.get(key, 0.0) + count * value
        if (resources.get("GPU", 0), resources.get("CPU", 0)) > (largest.get("GPU", 0), largest.get("CPU", 0)):
            largest = dict(resources)
    for key, cap in (max_resources or {}).items():
        if key in total:
            total[key] = min(total[key], cap)
    return Capacity(total, largest) if total else None


def autoscaler_capacity(cluster_config: Mapping) -> Capacity | None:
    """Capacity with every node type at its max_workers (capped by the global max_workers)."""
    node_types = cluster_config.get("available_node_types")
    if not node_types:
        return None
    head_type = cluster_config.get("head_node_type")
    budget = cluster_config.get("max_workers", math.inf)
    total: dict[str, float] = {}
    largest: dict[str, float] = {}
    # Largest nodes first so the global cap keeps the nodes a trial can use best.
    ordered = sorted(node_types.items(), key=lambda kv: -kv[1].get("resources", {}).get("GPU", 0))
    for name, spec in ordered:
        res = spec.get("resources", {})
        count = 1 if name == head_type else min(spec.get("max_workers", 0), budget)
        if name != head_type:
            budget -= count
        for key, value in res.items():
            total[key] = total.get(key, 0.0) + count * value
        if count and (res.get("GPU", 0), res.get("CPU", 0)) > (largest.get("GPU", 0), largest.get("CPU", 0)):
            largest = dict(res)
    return Capacity(total, largest)


def _larger(a: Capacity, b: Capacity) -> Capacity:
    keys = set(a.total) | set(b.total)
    total = {k: max(a.total.get(k, 0.0), b.total.get(k, 0.0)) for k in keys}
    largest = max((a.largest_node, b.largest_node), key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)))
    return Capacity(total, dict(largest))
