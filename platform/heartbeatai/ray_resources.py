"""CPU and GPU requests for Ray Train runs (DESIGN.md, Ray on this platform).

With Ray's default requests a small machine deadlocks: a Tune trial's driver holds a
whole CPU and its Train workers never get scheduled (WorkerGroupStartupTimeoutError,
retried forever). The driver therefore asks for a token CPU and the workers share the
rest. Computed from what the cluster reports, never hard-coded.
"""

from __future__ import annotations

import math

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


def cluster_capacity() -> dict[str, float]:
    """{"CPU": ..., "GPU": ...} of the connected Ray cluster (ray.init must have run)."""
    import ray

    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0.0)), "GPU": float(resources.get("GPU", 0.0))}
