"""Joining a Ray cluster, or starting a local Ray that listens on loopback only.

A driver joins the cluster it runs on (a job's RAY_ADDRESS, or a node started here with
`ray start`); anywhere else the study starts its own Ray, and that one must not listen on
every interface: Ray binds all of them by default and advertises the machine's external
address (DESIGN.md, Ray).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def joining_cluster() -> bool:
    """A Ray cluster to join: a job's RAY_ADDRESS, or a node started here with `ray start`."""
    return bool(os.environ.get("RAY_ADDRESS")) or Path(tempfile.gettempdir(), "ray", "ray_current_cluster").exists()


def prefer_loopback() -> None:
    """Before `import ray`: a local Ray the platform starts itself listens on 127.0.0.1 only.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import (DESIGN.md, Ray); a driver joining
    an existing cluster must leave it alone.
    """
    if not joining_cluster():
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def ensure_ray() -> None:
    """Join the running cluster, else start a local Ray (on loopback once prefer_loopback ran)."""
    import ray

    if ray.is_initialized():
        return
    if joining_cluster():
        ray.init(address="auto", log_to_driver=False)
    else:
        # With the dashboard (and so the state API): Ray Train's placement-group cleaner polls
        # it; without, a finished multi-worker trial's workers keep their CPUs and the next
        # trial's worker group never starts.
        ray.init(log_to_driver=False)
